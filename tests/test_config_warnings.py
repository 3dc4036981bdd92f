"""check-config's warnings: a file that is valid but will not work where the
service runs still exits 0, with one warning (and its line) per trap."""

from __future__ import annotations

import configparser
import tempfile
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config_warnings import HIDDEN_FROM_SERVICE, SERVICE_WRITABLE

REPO = Path(__file__).resolve().parent.parent


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str],
          *option: str) -> tuple[int, str, list[str]]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    code = main(["check-config", *option, str(path)])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.startswith("warning: ")]


def test_the_example_config_has_no_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(REPO / "config" / "edge-agent.toml")]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith(": OK") and err == ""


WARNINGS = [
    # (trap, config, line, key and words)
    ("pin off the header", "[gpio]\nled_pins = [5, 6, 99]\n", 2,
     "gpio.led_pins: GPIO99 is not on the Pi's 40-pin header"),
    ("button pin name off the header", "[gpio]\nbutton = 'GPIO28'\n", 2, "gpio.button: GPIO28"),
    ("button on a ground pin", "[gpio]\nbutton = 'BOARD6'\n", 2,
     "gpio.button: 'BOARD6' is a power or ground pin"),
    ("misspelt microphone", "[audio]\ninput = 'No Such Mic Anywhere'\n", 2,
     "audio.input: no input device matches 'No Such Mic Anywhere'"),
    ("plain http to another host", "[cloud]\nbase_url = 'http://192.168.1.20:8000/v1'\n", 2,
     "cloud.base_url: plain http to 192.168.1.20"),
    ("voice under /tmp", "[offline]\npiper_voice = '{tmp}/voice.onnx'\n", 2,
     "offline.piper_voice: {tmp}/voice.onnx is under /tmp"),
    ("event log outside LogsDirectory", "[log]\nevents = '/var/log/elsewhere/e.jsonl'\n", 2,
     "log.events: /var/log/elsewhere/e.jsonl is outside the directories the service may "
     "write"),
    ("state under /tmp", "[service]\nstate_dir = '/tmp/state'\n", 2,
     "service.state_dir: /tmp/state is under /tmp"),
]


@pytest.mark.parametrize(("text", "line", "words"), [w[1:] for w in WARNINGS],
                         ids=[w[0] for w in WARNINGS])
def test_each_trap_is_a_warning_with_its_line_not_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int,
        words: str) -> None:
    (tmp_path / "voice.onnx").write_bytes(b"")
    code, out, warnings = check(tmp_path, text.format(tmp=tmp_path), capsys)
    assert code == 0, warnings
    assert out.strip().endswith("OK (1 warning)")
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        f"warning: {tmp_path / 'config.toml'}:{line}: {words.format(tmp=tmp_path)}")


def test_a_sound_in_a_home_directory_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """ProtectHome=yes: /home, /root and /run/user look empty to the service."""
    with tempfile.TemporaryDirectory(dir=Path.home()) as folder:
        home = Path(folder)
        if not any(home.is_relative_to(d) for d in HIDDEN_FROM_SERVICE):
            pytest.skip(f"the home directory {Path.home()} is not one the unit hides")
        (home / "ding.wav").write_bytes(b"")
        code, _, warnings = check(home, f"[earcons]\nwake = '{home}/ding.wav'\n", capsys)
    assert code == 0
    assert len(warnings) == 1 and "earcons.wake:" in warnings[0]
    assert "ProtectHome=yes" in warnings[0]


@pytest.mark.parametrize("text", [
    "[gpio]\nled_pins = [0, 27, 13]\nbutton = 'GPIO4'\n",
    "[gpio]\nenabled = false\nled_pins = [99, 98, 97]\n",
    "[gpio]\nbutton = 'BOARD11'\n",
    "[cloud]\nbase_url = 'http://127.0.0.1:8080/v1'\n",
    "[cloud]\nbase_url = 'http://localhost:8080/v1'\n",
    "[cloud]\nbase_url = 'http://[::1]:8080/v1'\n",
    "[cloud]\nenabled = false\nbase_url = 'http://192.168.1.20/v1'\n",
    "[log]\nevents = '/var/log/edge-agent/events.jsonl'\n",
    "[service]\nstate_dir = '/var/lib/edge-agent'\n",
])
def test_settings_that_work_in_the_service_give_no_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    code, out, warnings = check(tmp_path, text, capsys)
    assert code == 0 and warnings == [], warnings
    assert out.strip().endswith(": OK")


def test_the_sandbox_the_warnings_assume_is_the_unit_s() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((REPO / "systemd" / "edge-agent.service").read_text())
    service = unit["Service"]
    assert service["ProtectHome"] == "yes" and service["PrivateTmp"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert {"/home", "/tmp"} <= set(HIDDEN_FROM_SERVICE)
    writable = {f"/var/lib/{service['StateDirectory']}", f"/var/log/{service['LogsDirectory']}",
                f"/run/{service['RuntimeDirectory']}"}
    assert writable == set(SERVICE_WRITABLE)


@pytest.mark.parametrize(("hook", "server"), [("99-pipewire-default.conf", "PipeWire"),
                                                ("99-pulse.conf", "PulseAudio")])
def test_default_routed_to_a_desktop_sound_server_is_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        hook: str, server: str) -> None:
    """A desktop image sends ALSA's "default" to the user's sound server: fine in
    the admin's shell, silence in the service."""
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    monkeypatch.setattr("edge_agent.config_warnings.ALSA_CONF_DIRS", (conf_d,))
    text = "[audio]\ninput = 'default'\noutput = 'default'\n"
    assert check(tmp_path, text, capsys)[2] == []  # no sound server: default is the card
    (conf_d / hook).write_text("pcm.!default { type pipewire }\n")
    code, _, warnings = check(tmp_path, text, capsys)
    assert code == 0
    assert len(warnings) == 2, warnings
    assert f"config.toml:2: audio.input: ALSA's default goes to {server}" in warnings[0]
    assert f"config.toml:3: audio.output: ALSA's default goes to {server}" in warnings[1]
    assert "plughw:CARD=" in warnings[0]


def test_mqtt_files_under_tmp_are_warnings_while_mqtt_is_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The service reads the broker password and CA itself, through the same sandbox."""
    for name in ("mqtt.pass", "ca.pem"):
        (tmp_path / name).write_text("x\n")
        (tmp_path / name).chmod(0o600)
    files = f"password_file = '{tmp_path}/mqtt.pass'\nca_file = '{tmp_path}/ca.pem'\n"
    code, out, warnings = check(tmp_path, f"[mqtt]\nhost = 'broker.lan'\ntls = true\n{files}",
                                capsys)
    assert code == 0 and out.strip().endswith("OK (2 warnings)"), warnings
    assert f"config.toml:4: mqtt.password_file: {tmp_path}/mqtt.pass is under /tmp" \
        in warnings[0]
    assert f"config.toml:5: mqtt.ca_file: {tmp_path}/ca.pem is under /tmp" in warnings[1]
    # MQTT off (no host), or no TLS for the CA: the service opens neither file.
    assert check(tmp_path, f"[mqtt]\n{files}", capsys)[2] == []
    warnings = check(tmp_path, f"[mqtt]\nhost = 'broker.lan'\n{files}", capsys)[2]
    assert len(warnings) == 1 and "mqtt.password_file:" in warnings[0], warnings
