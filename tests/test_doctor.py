"""`edge-agent doctor` on this machine: with the fake cloud and .wav devices every
check passes; each thing an owner gets wrong in the first hour fails its own
check, with a fix, and exit status 1."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent import cli, doctor
from edge_agent.doctor import audio, cloud, system
from edge_agent.offline import models
from edge_agent.testbed.alsa import asoundrc
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.tools.voices import piper, silence, write_wav

KEY_ENV = "DOCTOR_TEST_KEY"
KEY = "sk-doctor-test-0123456789"
LISTEN = 2.2  # seconds: the wake phrase below, and no more


class FakeDaemon:
    """A control socket answering `status` as a running daemon with working devices."""

    def __init__(self, path: Path, reply: dict | None = None) -> None:
        self.path = path
        self.reply = reply or {"ok": True, "result": {"state": "idle", "microphone": True,
                                                      "speaker": True}}
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(json.dumps(self.reply).encode() + b"\n")

    def close(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()


class Setup:
    """A device as an owner would have it once everything is right."""

    def __init__(self, tmp: Path, cloud: FakeCloud) -> None:
        self.tmp = tmp
        self.cloud = cloud
        self.state = tmp / "state"
        (self.state / "models" / "vosk-model-small-en-us-0.15" / "am").mkdir(parents=True)
        self.microphone = write_wav(tmp / "mic.wav", np.concatenate(
            [silence(0.3), piper("hey jarvis"), silence(0.3)]))
        self.values = {
            "audio": {"input": str(self.microphone), "output": str(tmp / "speaker.wav")},
            "cloud": {"base_url": cloud.base_url, "api_key_env": KEY_ENV},
            "gpio": {"enabled": False},
            "service": {"state_dir": str(self.state),
                        "control_socket": str(tmp / "control.sock")},
        }
        self.daemon: FakeDaemon | None = None

    def config(self) -> Path:
        lines = []
        for table, keys in self.values.items():
            lines.append(f"[{table}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
        path = self.tmp / "config.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def run_daemon(self, reply: dict | None = None) -> None:
        """Devices through a running daemon: no listening, so the test is quick."""
        self.daemon = FakeDaemon(Path(self.values["service"]["control_socket"]), reply)

    def doctor(self, listen: float = LISTEN) -> tuple[int, dict[str, list[str]], str]:
        """Exit status, {check: [FAIL lines]}, and everything printed."""
        lines: list[str] = []
        code = doctor.run(self.config(), listen_seconds=listen, out=lines.append)
        text = "\n".join(lines)
        failed: dict[str, list[str]] = {}
        for line in text.splitlines():
            if line.startswith("FAIL"):
                failed.setdefault(line.split()[1], []).append(line)
        return code, failed, text


@pytest.fixture
def setup(tmp_path: Path, fake_cloud: FakeCloud,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setattr(system, "SECRETS_FILE", tmp_path / "secrets")
    monkeypatch.setattr(models, "SERVICE_MODELS_DIR", tmp_path / "service-models")
    s = Setup(tmp_path, fake_cloud)
    yield s
    if s.daemon is not None:
        s.daemon.close()


def test_everything_passes_with_the_fake_cloud_and_wav_devices(setup: Setup) -> None:
    code, failed, text = setup.doctor()
    assert failed == {}, text
    assert code == 0
    assert "hey_jarvis: peak score" in text
    assert "dBFS" in text
    assert KEY not in text
    request = setup.cloud.requests_for("models")[-1]
    assert request.headers["authorization"] == f"Bearer {KEY}"  # the key was checked
    assert (setup.tmp / "speaker.wav").stat().st_size > 44  # the tone was played


def test_a_running_daemon_is_asked_instead_of_opening_the_devices(setup: Setup) -> None:
    setup.values["audio"]["input"] = "no-such-microphone"  # would fail if opened
    setup.run_daemon()
    code, failed, text = setup.doctor()
    assert (code, failed) == (0, {}), text
    assert "control.sock" in text
    assert not (setup.tmp / "speaker.wav").exists()


def test_a_daemon_that_does_not_answer_keeps_its_devices(setup: Setup) -> None:
    setup.run_daemon({"ok": False, "error": "busy"})
    code, failed, text = setup.doctor()
    assert code == 1
    assert list(failed) == ["daemon"], text
    assert not (setup.tmp / "speaker.wav").exists()  # doctor did not open the speaker


def test_no_key(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    setup.run_daemon()
    code, failed, text = setup.doctor()
    assert code == 1
    assert list(failed) == ["API"], text
    assert "fix:" in text and KEY_ENV in failed["API"][0]


def test_the_key_from_the_services_secrets_file_counts(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    secrets = setup.tmp / "secrets"
    secrets.write_text(f"{KEY_ENV}={KEY}\n")
    secrets.chmod(0o640)
    setup.run_daemon()
    code, failed, text = setup.doctor()
    assert (code, failed) == (0, {}), text
    assert setup.cloud.requests_for("models")[-1].headers["authorization"] == f"Bearer {KEY}"


def test_a_refused_key(setup: Setup) -> None:
    setup.cloud.fail("models", "status", status=401, times=None)
    setup.run_daemon()
    code, failed, text = setup.doctor()
    assert code == 1
    assert list(failed) == ["cloud"], text
    assert "401" in failed["cloud"][0]
    assert KEY not in text


def test_no_network(setup: Setup) -> None:
    setup.run_daemon()
    with setup.cloud.offline():
        code, failed, text = setup.doctor()
    assert code == 1
    assert list(failed) == ["cloud"], text
    assert "refused" in failed["cloud"][0]


def test_a_missing_vosk_model(setup: Setup) -> None:
    setup.values["service"]["state_dir"] = str(setup.tmp / "empty-state")
    setup.run_daemon()
    code, failed, text = setup.doctor()
    assert code == 1
    assert list(failed) == ["Vosk"], text
    assert str(setup.tmp / "empty-state" / "models") in failed["Vosk"][0]
    assert models.INSTALL_COMMAND in text


def unreadable_secrets(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The service's secrets file as install leaves it (0600 root:root), seen by an
    operator who is not root."""
    monkeypatch.delenv(KEY_ENV)
    secrets = setup.tmp / "secrets"
    secrets.write_text(f"{KEY_ENV}={KEY}\n")
    secrets.chmod(0o600)
    if os.geteuid() == 0:  # root reads any file: refuse it at the lowest layer instead
        real = pathlib.Path.read_text

        def read_text(self: Path, *args: object, **kwargs: object) -> str:
            if self == secrets:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    return secrets


def daemon_cloud(state: str, cause: str = "", reason: str = "") -> dict:
    """A `status` reply from a daemon with working devices and this cloud state."""
    return {"ok": True, "result": {"state": "idle", "microphone": True, "speaker": True,
                                   "cloud": {"enabled": True, "state": state,
                                             "online": state == "online", "cause": cause,
                                             "reason": reason}}}


def test_an_unreadable_secrets_file(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = unreadable_secrets(setup, monkeypatch)
    setup.run_daemon(daemon_cloud("offline", "no_key", "the API key is missing"))
    code, failed, text = setup.doctor()
    assert code == 1
    assert list(failed) == ["API"], text
    assert str(secrets) in failed["API"][0] and "sudo" in text


def test_a_key_file_every_user_can_read(setup: Setup) -> None:
    secrets = setup.tmp / "secrets"
    secrets.write_text(f"OTHER=1\n{KEY_ENV}={KEY}\n")
    secrets.chmod(0o644)
    setup.run_daemon()
    code, failed, text = setup.doctor()
    assert code == 1
    assert list(failed) == ["permissions"], text
    assert "chmod 600" in text and "chown root:root" in text  # as scripts/install sets it


def test_no_sound_card(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    # An ALSA configuration with no devices at all, as on this machine.
    for name, value in asoundrc(setup.tmp).items():
        monkeypatch.setenv(name, value)
    setup.values["audio"] = {"input": "default", "output": "default"}
    code, failed, text = setup.doctor()
    assert code == 1
    assert sorted(failed) == ["microphone", "speaker"], text
    assert "aplay -l" in failed["microphone"][0]


def test_silence_is_not_a_working_microphone(setup: Setup) -> None:
    setup.values["audio"]["input"] = str(write_wav(setup.tmp / "quiet.wav", silence(1.0)))
    code, failed, text = setup.doctor(listen=0.5)
    assert code == 1
    assert sorted(failed) == ["microphone", "wake"], text


def test_cli_doctor_exit_status(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    setup.run_daemon()
    assert cli.main(["doctor", "--config", str(setup.config())]) == 1


def test_dns_failure_is_named() -> None:
    error = cloud.httpx2.ConnectError("[Errno -2] Name or service not known")
    error.__cause__ = socket.gaierror(-2, "Name or service not known")
    finding = cloud.connection_failure(error, "api.example.com")
    assert finding.ok is False and "DNS" in finding.detail


def test_a_missing_echo_canceller_library_is_named_with_its_fix(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    import speexdsp_aec.wrapper

    monkeypatch.setattr(speexdsp_aec.wrapper, "_load_lib", lambda: None)
    setup.run_daemon()
    code, failed, text = setup.doctor()
    assert code == 1
    assert list(failed) == ["echo"], text
    assert "apt-get install libspeexdsp1" in text


def test_each_wake_engine_is_held_to_its_own_threshold() -> None:
    from edge_agent.config import WakeSettings
    from edge_agent.wake import WakeDetector

    wake = WakeDetector(WakeSettings(models=["hey_jarvis"], threshold=0.5,
                                     thresholds={"hey_jarvis:microwakeword": 0.9}))
    # microWakeWord's 0.7 beats openWakeWord's threshold, not its own: no wake.
    peaks = {("hey_jarvis", "openwakeword"): 0.3, ("hey_jarvis", "microwakeword"): 0.7}
    [finding] = audio.wake_findings(peaks, wake.threshold)
    assert finding.ok is False, finding
    assert "0.70 < threshold 0.90 (microwakeword)" in finding.detail
    assert '"hey_jarvis:microwakeword" toward 0.70' in finding.fix
    # Either engine over its own threshold wakes the fused detector.
    peaks["hey_jarvis", "openwakeword"] = 0.6
    [finding] = audio.wake_findings(peaks, wake.threshold)
    assert finding.ok is True, finding


def test_the_seconded_head_passes_doctor_only_with_a_second() -> None:
    from edge_agent.config import WakeSettings
    from edge_agent.wake import WakeDetector
    from edge_agent.wake._second import HEAD_THRESHOLD, SECOND

    wake = WakeDetector(WakeSettings(models=["hey_jarvis"]))
    peaks = {("hey_jarvis", "openwakeword"): SECOND / 2,
             ("hey_jarvis", "microwakeword"): SECOND / 2, ("hey_jarvis", "own_head"): 0.99}
    [finding] = audio.wake_findings(peaks, wake.threshold)
    assert finding.ok is False, "no stock engine seconded the head: it would not wake"
    assert f"0.99 >= threshold {HEAD_THRESHOLD:.2f} (own_head)" in finding.detail
    assert "own_head" not in finding.fix, "lower a stock engine's threshold, not the head's"
    peaks["hey_jarvis", "microwakeword"] = SECOND
    [finding] = audio.wake_findings(peaks, wake.threshold)
    assert finding.ok is True, finding


@pytest.mark.parametrize(("cloud", "verdict"), [
    (("online",), None),
    (("offline", "key_refused", "the API key was refused (401)"), "refused"),
])
def test_an_operator_gets_the_key_check_from_the_running_daemon(
        cloud: tuple[str, ...], verdict: str | None, setup: Setup,
        monkeypatch: pytest.MonkeyPatch) -> None:
    unreadable_secrets(setup, monkeypatch)
    setup.run_daemon(daemon_cloud(*cloud))
    code, failed, text = setup.doctor()
    if verdict is None:
        assert (code, failed) == (0, {}), text
        assert "key is accepted" in text
    else:
        assert code == 1
        assert list(failed) == ["API"], text
        assert verdict in failed["API"][0] and "systemctl restart" in text
    assert KEY not in text


def test_an_unreadable_secrets_file_without_a_daemon_is_not_a_failure(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = unreadable_secrets(setup, monkeypatch)
    code, failed, text = setup.doctor()
    assert (code, failed) == (0, {}), text
    [line] = [line for line in text.splitlines() if line.startswith("skip  API key")]
    assert str(secrets) in line and "as root" in line and "sudo" in line
