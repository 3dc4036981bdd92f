"""One models directory rule for scripts/fetch-models, the daemon and
`edge-agent models`: what one installs, the others find."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import OfflineSettings, ServiceSettings, Settings
from edge_agent.offline import find_vosk_model
from edge_agent.offline import models as rule
from tests.test_fetch_models import SCRIPT, VOSK, Mirror, entry, mirror, vosk_zip

__all__ = ["mirror"]  # the fixture, imported for use here


def fetch_models_module():  # the script, imported as a module
    loader = importlib.machinery.SourceFileLoader("fetch_models", str(SCRIPT))
    spec = importlib.util.spec_from_loader("fetch_models", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize("uid", [0, 1000])
def test_fetch_models_installs_where_the_daemon_of_the_same_user_looks(
        uid: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: uid)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    dest = fetch_models_module().default_dest()
    settings = Settings()
    assert dest == rule.install_dir(settings)
    assert dest in rule.models_dirs(settings.state_dir)
    assert fetch_models_module().SERVICE_DEST == rule.SERVICE_MODELS_DIR


def test_the_service_installs_into_its_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge-agent")
    assert rule.install_dir(Settings()) == rule.SERVICE_MODELS_DIR
    assert rule.models_dirs(Settings().state_dir) == [rule.SERVICE_MODELS_DIR]


def test_a_daemon_run_by_hand_finds_the_models_root_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = tmp_path / "service-models"
    (service / VOSK / "am").mkdir(parents=True)
    monkeypatch.setattr(rule, "SERVICE_MODELS_DIR", service)
    own = tmp_path / "home-state"
    assert find_vosk_model(OfflineSettings(), own) == service / VOSK
    # its own state directory wins
    (own / "models" / VOSK / "am").mkdir(parents=True)
    assert find_vosk_model(OfflineSettings(), own) == own / "models" / VOSK


def test_a_missing_model_names_every_place_searched_and_the_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rule, "SERVICE_MODELS_DIR", tmp_path / "service-models")
    settings = Settings(service=ServiceSettings(state_dir=str(tmp_path / "state")))
    check = rule.check_vosk(settings)
    assert check.problem is not None
    assert str(tmp_path / "state" / "models") in check.problem
    assert str(tmp_path / "service-models") in check.problem
    assert rule.INSTALL_COMMAND in check.fix


def edge_agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_models_install_then_list(tmp_path: Path, mirror: Mirror) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(f'[service]\nstate_dir = "{state}"\n')
    listed = edge_agent("models", "list", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 1
    assert "models install" in listed.stdout

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({VOSK: entry("vosk", {f"{VOSK}.zip": vosk_zip("v1")},
                                                mirror)}))
    done = edge_agent("models", "install", "--config", str(config), "--manifest",
                      str(manifest), "--base-url", mirror.url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (state / "models" / VOSK / "am").is_dir()

    listed = edge_agent("models", "list", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout
    assert str(state / "models" / VOSK) in listed.stdout


def test_the_daemon_start_up_warning_says_where_it_looked_and_what_to_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from edge_agent.agent import daemon
    from edge_agent.errors import ModelError

    def no_voice(settings: OfflineSettings) -> Path:
        raise ModelError("no voice in this test")

    monkeypatch.setattr(daemon, "default_piper_voice", no_voice)  # Piper is not the point
    monkeypatch.setattr(rule, "SERVICE_MODELS_DIR", tmp_path / "service-models")
    settings = Settings(service=ServiceSettings(state_dir=str(tmp_path / "state")))
    with caplog.at_level("WARNING"):
        offline = daemon.build_offline(settings)
    assert offline.vosk is None
    warning = next(r.getMessage() for r in caplog.records if "Vosk" in r.getMessage())
    assert str(tmp_path / "state" / "models") in warning
    assert str(tmp_path / "service-models") in warning
    assert rule.INSTALL_COMMAND in warning
