"""What the CLI says when the first hour goes wrong: a --config that is not there,
and no sound card at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import cli
from edge_agent.audio.devices import find_device
from edge_agent.errors import AudioDeviceError


@pytest.mark.parametrize("verb", [["run"], ["status"], ["say", "hi"], ["mute"], ["ask", "hi"],
                                  ["doctor"], ["models", "list"], ["check-config"],
                                  ["wake-test", "x.wav"]])
@pytest.mark.parametrize("named_by", ["--config", "$EDGE_AGENT_CONFIG"])
def test_a_missing_config_file_is_an_error_on_every_verb(
        verb: list[str], named_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    if named_by == "--config":
        verb = [*verb, "--config", str(missing)]
    else:
        monkeypatch.setenv("EDGE_AGENT_CONFIG", str(missing))
    assert cli.main(verb) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert str(missing) in err and named_by.lstrip("$") in err


def test_devices_without_a_sound_card_fails_with_a_hint(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("edge_agent.audio.list_devices", lambda: [])
    assert cli.main(["devices"]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "aplay -l" in err and "audio group" in err and ".wav" in err


class _NoDefault:
    """A PortAudio session on a machine without a sound card."""

    def get_default_input_device_info(self) -> dict:
        raise OSError("No Default Input Device Available")

    def get_device_count(self) -> int:
        return 0


def test_no_default_input_device_says_what_to_check() -> None:
    with pytest.raises(AudioDeviceError, match="arecord -l") as caught:
        find_device(_NoDefault(), "default", "input")  # type: ignore[arg-type]
    assert ".wav" in str(caught.value)
    with pytest.raises(AudioDeviceError, match="there is none"):
        find_device(_NoDefault(), "USB", "input")  # type: ignore[arg-type]
