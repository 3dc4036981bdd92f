"""Config loading through the real CLI: every bad file exits 2 naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import (
    Settings,
    load_api_key,
    load_config,
    parse_settings,
)
from edge_agent.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "edge-agent.toml"
SECRET = "sk-test-THIS-MUST-NEVER-BE-PRINTED-0123456789"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_example_config_is_valid_and_equals_the_defaults() -> None:
    settings = load_config(EXAMPLE)
    assert settings == Settings()


def test_example_documents_every_key() -> None:
    """Each settings field appears as a key in the example, so owners see every default."""
    import dataclasses
    import tomllib

    data = tomllib.loads(EXAMPLE.read_text())

    def walk(obj: object, table: dict, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            if not f.compare:  # where the settings came from, not a setting
                continue
            assert f.name in table, f"{prefix}{f.name} missing from the example"
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, table[f.name], f"{prefix}{f.name}.")

    walk(Settings(), data, "")


def test_cli_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(EXAMPLE, capsys)
    assert code == 0
    assert out.strip().endswith(": OK")
    assert err == ""


BAD_CONFIGS = [
    ("syntax error", "[audio\ninput = 'x'", "TOML syntax error"),
    ("unknown section", "[audoi]\ninput = 'default'", "audoi: unknown key; did you mean audio?"),
    ("unknown key", "[audio]\nfrobnicate = 1", "audio.frobnicate: unknown key"),
    ("misspelt key", "[wake]\nthreshhold = 0.5", "wake.threshhold: unknown key; did you mean "
                                                 "wake.threshold?"),
    ("wrong type", "[wake]\nthreshold = 'high'", "wake.threshold: expected a number"),
    ("bool for number", "[audio]\nvolume = true", "audio.volume: expected a number"),
    ("threshold above 1", "[wake]\nthreshold = 1.5", "wake.threshold: expected a number from 0 "
                                                     "to 1"),
    ("threshold below 0", "[wake]\nthreshold = -0.1", "wake.threshold"),
    ("negative timeout", "[cloud.timeouts]\nstt = -1", "cloud.timeouts.stt: expected a number "
                                                       "above 0"),
    ("zero timeout", "[cloud.timeouts]\nconnect = 0", "cloud.timeouts.connect"),
    ("volume out of range", "[audio]\nvolume = 2", "audio.volume: expected a number from 0 to 1"),
    ("int field given float", "[turn]\nvad_aggressiveness = 1.5", "turn.vad_aggressiveness: "
                                                                  "expected a whole number"),
    ("aggressiveness range", "[turn]\nvad_aggressiveness = 7", "turn.vad_aggressiveness"),
    ("missing vosk model", "[offline]\nvosk_model = '/nonexistent/vosk'", "offline.vosk_model: "
                                                                          "expected an existing "
                                                                          "directory"),
    ("missing piper voice", "[offline]\npiper_voice = '/nonexistent/v.onnx'", "offline."
                                                                              "piper_voice"),
    ("missing key file", "[cloud]\napi_key_file = '/nonexistent/key'", "cloud.api_key_file"),
    ("bad choice", "[offline]\nstt_mode = 'sometimes'", "offline.stt_mode: expected one of"),
    ("unknown wake model", "[wake]\nmodels = ['hey_jarvs']", "wake.models: 'hey_jarvs' is neither"),
    ("missing wake model file", "[wake]\nmodels = ['/nonexistent/x.tflite']", "wake.models"),
    ("empty wake list", "[wake]\nmodels = []", "wake.models: expected at least one"),
    ("override for unused model", "[wake]\nthresholds = { alexa = 0.6 }", "wake.thresholds.alexa"),
    ("section is a value", "audio = 3", "audio: expected a table"),
    ("list of wrong items", "[gpio]\nled_pins = ['a', 'b', 'c']", "gpio.led_pins: expected a "
                                                                  "list of whole numbers"),
    ("too few rgb pins", "[gpio]\nled_pins = [5]", "gpio.led_pins: expected 3 pins"),
    ("buffer too short", "[audio]\nbuffer_seconds = 5", "audio.buffer_seconds: expected at least"),
    ("missing input wav", "[audio]\ninput = '/nonexistent/in.wav'", "audio.input"),
    ("bad base url", "[cloud]\nbase_url = 'api.openai.com'", "cloud.base_url"),
    ("probe bounds", "[offline]\nprobe_interval = 30\nprobe_max_interval = 10",
     "offline.probe_max_interval"),
    ("pattern for unknown state", "[gpio.patterns]\nsleepy = 'off'", "gpio.patterns.sleepy"),
    ("missing earcon file", "[earcons]\nwake = '/nonexistent/ding.wav'", "earcons.wake"),
    ("empty file", "", "the file is empty"),
    ("whitespace-only file", "  \n\n", "the file is empty"),
    ("not utf-8", b"\xff\xfe[audio]".decode("latin-1"), "not UTF-8"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_CONFIGS],
                         ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_2_and_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    path.chmod(0o600)
    code, out, err = check(path, capsys)
    assert code == 2
    assert out == ""
    assert str(path) in err
    assert expected in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(tmp_path / "nope.toml", capsys)
    assert code == 2
    assert "no such file" in err


def test_unreadable_key_file(capsys: pytest.CaptureFixture[str]) -> None:
    """Root reads every file, so as root the check runs as nobody (setpriv)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        key = write(folder, SECRET, "key")
        key.chmod(0)
        config = write(folder, f"[cloud]\napi_key_file = '{key}'")
        config.chmod(0o644)
        if os.geteuid() != 0:
            code, _, err = check(config, capsys)
        else:
            result = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 sys.executable, "-m", "edge_agent", "check-config", str(config)],
                capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
            code, err = result.returncode, result.stderr
    assert code == 2, err
    assert "cloud.api_key_file: expected a file this user can read" in err
    assert SECRET not in err


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[wake]\nthreshold = 3\n[audio]\nvolume = -1\nbogus = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 3


def test_relative_paths_are_taken_from_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "voice.onnx").write_bytes(b"")
    settings = load_config(write(tmp_path, "[offline]\npiper_voice = 'voice.onnx'"))
    assert settings.offline.piper_voice == str(tmp_path / "voice.onnx")


@pytest.mark.parametrize("suffix", [".tflite", ".onnx", ".npz"])
def test_per_model_threshold_and_custom_model(tmp_path: Path, suffix: str) -> None:
    model = tmp_path / f"computer{suffix}"
    model.write_bytes(b"")
    settings = load_config(write(
        tmp_path, f"[wake]\nmodels = ['alexa', '{model}']\nthresholds = {{ computer = 0.7 }}"))
    assert settings.wake.thresholds == {"computer": 0.7}


def test_env_variable_chooses_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[audio]\nvolume = 0.5")
    monkeypatch.setenv("EDGE_AGENT_CONFIG", str(path))
    assert main(["check-config"]) == 0
    assert str(path) in capsys.readouterr().out


# --- secrets ------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f"[cloud]\napi_key_env = '{SECRET}'",                      # key pasted where a name goes
    f"[cloud]\napi_key_file = '{SECRET}'",                     # key pasted where a path goes
    f"[cloud]\napi_key = '{SECRET}'",                          # key under an unknown name
    f"[cloud]\napi_key_env = 42\napi_key_file = ['{SECRET}']",  # wrong types
])
def test_secrets_never_appear_in_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        text: str) -> None:
    code, out, err = check(write(tmp_path, text), capsys)
    assert code == 2
    assert SECRET not in out + err
    assert "cloud.api_key" in err


def test_key_from_file_and_env_is_never_shown(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = write(tmp_path, SECRET + "\n", "key")
    settings = load_config(write(tmp_path, f"[cloud]\napi_key_file = '{key_file}'"))
    key, warnings = load_api_key(settings.cloud)
    assert key == SECRET
    assert SECRET not in repr(key) + repr(settings) + f"{key!r}"
    assert warnings == []
    monkeypatch.setenv("MY_KEY", SECRET)
    key, _ = load_api_key(parse_settings({"cloud": {"api_key_env": "MY_KEY"}}).cloud)
    assert key == SECRET and SECRET not in repr(key)


def test_secret_not_in_help_or_version() -> None:
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    for args in (["--help"], ["--version"], ["check-config", "--help"]):
        result = subprocess.run([sys.executable, "-m", "edge_agent", *args], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0
        assert SECRET not in result.stdout + result.stderr


# --- --config on every verb that reads one ---------------------------------------------


def test_check_config_takes_the_file_as_option_or_positional(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "[audio]\nvolume = 0.5\n")
    bad = write(tmp_path, "[audio]\nvolume = 5\n", "bad.toml")
    assert main(["check-config", "--config", str(good)]) == 0
    assert main(["check-config", str(good)]) == 0
    assert main(["check-config", "--config", str(bad)]) == 2
    assert f"{bad}:2: audio.volume" in capsys.readouterr().err
    assert main(["check-config", "--config", str(good), str(bad)]) == 2
    assert "two config files" in capsys.readouterr().err


def test_say_offline_with_a_bad_config_fails_with_its_problems(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Finding 15: it spoke with the built-in defaults instead."""
    bad = write(tmp_path, "[audio]\nvolume = 5\n")
    out = tmp_path / "out.wav"
    assert main(["say", "--offline", "--config", str(bad), "--output", str(out), "hi"]) == 2
    assert f"{bad}:2: audio.volume" in capsys.readouterr().err
    assert main(["say", "--offline", "--config", str(tmp_path / "nope.toml"),
                 "--output", str(out), "hi"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not out.exists()


def test_mqtt_names_that_would_break_topics_fail_check_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found before the daemon starts, each with its line, like every config problem."""
    config = write(tmp_path, '[mqtt]\nhost = "broker.lan"\ndevice_id = "kitchen/#"\n'
                             'group = "a b"\ndiscovery_prefix = "+bad"\n')
    code, out, err = check(config, capsys)
    assert code == 2 and "OK" not in out
    for line, words in (
            (3, "mqtt.device_id: expected letters, digits, _ and - only (at most 64), "
                "got 'kitchen/#'"),
            (4, "mqtt.group: expected letters, digits, _ and - only (at most 64), got 'a b'"),
            (5, "mqtt.discovery_prefix: expected a topic like 'homeassistant', got '+bad'")):
        assert f"{config}:{line}: {words}" in err, err
    good = write(tmp_path, '[mqtt]\nhost = "broker.lan"\ndevice_id = "kitchen-pi_2"\n'
                           'group = "home"\ndiscovery_prefix = "ha/discovery"\n', "good.toml")
    assert check(good, capsys)[0] == 0
