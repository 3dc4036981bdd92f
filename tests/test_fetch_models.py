"""scripts/fetch-models against a loopback HTTP server serving small archives:
a good install, and a bad checksum or a cut download that keep the old model."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edge_agent.config import OfflineSettings
from edge_agent.offline import find_vosk_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch-models"
VOSK = "vosk-model-small-test-0.1"


class Mirror:
    """Serves ``files``; a name in ``cut`` is sent half way, then the connection drops."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                mirror.requests.append(name)
                body = mirror.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in mirror.cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/models"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    m = Mirror()
    yield m
    m.close()


def vosk_zip(version: str, *, top: str = VOSK) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{top}/am/final.mdl", f"acoustic model {version}" * 1000)
        zf.writestr(f"{top}/conf/model.conf", "--sample-frequency=16000\n")
        zf.writestr(f"{top}/README", version)
    return buffer.getvalue()


def entry(kind: str, files: dict[str, bytes], mirror: Mirror, *, sha: str | None = None) -> dict:
    mirror.files.update(files)
    return {"kind": kind, "files": [
        {"url": f"https://models.invalid/{name}",  # only reachable through --base-url
         "sha256": sha or hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in files.items()]}


def fetch(tmp_path: Path, mirror: Mirror, manifest: dict, *args: str
          ) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--manifest", str(path), "--base-url", mirror.url,
         "--dest", str(tmp_path / "models"), *args],
        capture_output=True, text=True, timeout=60)


def leftovers(dest: Path) -> list[str]:
    """Hidden entries besides the lock file: staging that should be gone."""
    return sorted(p.name for p in dest.iterdir()
                  if p.name.startswith(".") and p.name != ".fetch-models.lock")


def test_installs_vosk_and_piper_then_skips_them(tmp_path: Path, mirror: Mirror) -> None:
    manifest = {
        VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")}, mirror),
        "en_US-test-low": entry("piper", {"en_US-test-low.onnx": b"onnx" * 500,
                                          "en_US-test-low.onnx.json": b'{"audio": {}}'}, mirror),
    }
    result = fetch(tmp_path, mirror, manifest)
    assert result.returncode == 0, result.stderr
    dest = tmp_path / "models"
    assert (dest / VOSK / "README").read_text() == "v1"
    assert (dest / "en_US-test-low" / "en_US-test-low.onnx").read_bytes() == b"onnx" * 500
    assert leftovers(dest) == []
    assert "100%" in result.stderr  # the progress report
    assert f'offline.piper_voice = "{dest}/en_US-test-low/en_US-test-low.onnx"' in result.stdout
    # the daemon finds what was installed under its state directory
    assert find_vosk_model(OfflineSettings(), tmp_path) == dest / VOSK

    fetched = len(mirror.requests)
    again = fetch(tmp_path, mirror, manifest)
    assert again.returncode == 0 and "already installed" in again.stdout
    assert len(mirror.requests) == fetched


def test_new_release_replaces_the_old(tmp_path: Path, mirror: Mirror) -> None:
    fetch(tmp_path, mirror, {VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")}, mirror)})
    result = fetch(tmp_path, mirror, {VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v2")},
                                                  mirror)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models" / VOSK / "README").read_text() == "v2"
    assert leftovers(tmp_path / "models") == []


def test_bad_checksum_keeps_the_old_model(tmp_path: Path, mirror: Mirror) -> None:
    fetch(tmp_path, mirror, {VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")}, mirror)})
    tampered = entry("vosk", {f"{VOSK}.zip": vosk_zip("v2")}, mirror,
                     sha=hashlib.sha256(b"what the manifest promised").hexdigest())
    result = fetch(tmp_path, mirror, {VOSK: tampered})
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr
    assert (tmp_path / "models" / VOSK / "README").read_text() == "v1"
    assert leftovers(tmp_path / "models") == []


def test_interrupted_download_keeps_the_old_model(tmp_path: Path, mirror: Mirror) -> None:
    fetch(tmp_path, mirror, {VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")}, mirror)})
    newer = entry("vosk", {f"{VOSK}.zip": vosk_zip("v2")}, mirror)
    mirror.cut.add(f"{VOSK}.zip")
    result = fetch(tmp_path, mirror, {VOSK: newer})
    assert result.returncode == 1
    assert "cut short" in result.stderr
    assert (tmp_path / "models" / VOSK / "README").read_text() == "v1"
    assert leftovers(tmp_path / "models") == []


def test_staging_left_by_a_killed_run_is_cleaned(tmp_path: Path, mirror: Mirror) -> None:
    stale = tmp_path / "models" / f".{VOSK}.k1ll3d.partial" / "download"
    stale.mkdir(parents=True)
    (stale / f"{VOSK}.zip").write_bytes(b"half")
    result = fetch(tmp_path, mirror, {VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")},
                                                  mirror)})
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and leftovers(tmp_path / "models") == []


def test_one_run_at_a_time(tmp_path: Path, mirror: Mirror) -> None:
    (tmp_path / "models").mkdir()
    with (tmp_path / "models" / ".fetch-models.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = fetch(tmp_path, mirror, {VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")},
                                                      mirror)})
    assert result.returncode == 1 and "another fetch-models" in result.stderr
    assert mirror.requests == []


def test_a_failed_first_install_leaves_nothing(tmp_path: Path, mirror: Mirror) -> None:
    mirror.cut.add(f"{VOSK}.zip")
    result = fetch(tmp_path, mirror, {VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")},
                                                  mirror)})
    assert result.returncode == 1
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".fetch-models.lock"]
    assert find_vosk_model(OfflineSettings(), tmp_path) is None


def test_archive_that_is_not_a_model_is_refused(tmp_path: Path, mirror: Mirror) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../../escape.txt", "outside")
    evil = entry("vosk", {f"{VOSK}.zip": buffer.getvalue()}, mirror)
    result = fetch(tmp_path, mirror, {VOSK: evil})
    assert result.returncode == 1 and "unsafe path" in result.stderr
    assert not (tmp_path / "escape.txt").exists()

    wrong = entry("vosk", {f"{VOSK}.zip": vosk_zip("v1", top="something-else").replace(
        b"am/final.mdl", b"xx/final.mdl")}, mirror)
    result = fetch(tmp_path, mirror, {VOSK: wrong})
    assert result.returncode == 1 and "not a Vosk model" in result.stderr
    assert leftovers(tmp_path / "models") == [] and not (tmp_path / "models" / VOSK).exists()


def test_list_and_unknown_names(tmp_path: Path, mirror: Mirror) -> None:
    manifest = {VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")}, mirror)}
    listed = fetch(tmp_path, mirror, manifest, "--list")
    assert listed.returncode == 0 and VOSK in listed.stdout
    unknown = fetch(tmp_path, mirror, manifest, "no-such-model")
    assert unknown.returncode == 2 and "unknown model" in unknown.stderr


def test_builtin_manifest_pins_every_file() -> None:
    listed = subprocess.run([sys.executable, str(SCRIPT), "--list", "--dest", "/nonexistent"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    assert "vosk-model-small-en-us-0.15" in listed.stdout
    assert "en_US-lessac-medium" in listed.stdout
