"""The config file as an owner writes it: the mistakes editors and word processors
make get plain words and a line number, and a path that is not a plain file is
refused at once instead of hanging or filling memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import load_config
from edge_agent.configfile import MAX_CONFIG_BYTES, key_lines
from edge_agent.errors import ConfigError

SECRET = "sk-test-THIS-MUST-NEVER-BE-PRINTED-0123456789"


def check(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    path.chmod(0o600)
    code = main(["check-config", str(path)])
    return code, capsys.readouterr().err


SYNTAX = [
    # (what the owner did, file, line, words that must be there, raw parser words gone)
    ("newline in a string", b'[audio]\nvolume = 0.5\ninput = "USB Audio\n', 3,
     "not closed on this line", "Illegal character"),
    ("unquoted pin name", b"[gpio]\nenabled = true\nbutton = GPIO17\n", 3,
     'button = "GPIO17"', "Invalid value"),
    ("curly quotes", "[cloud]\n\nllm_model = \u201cgpt-4o\u201d\n".encode(), 3,
     "curly quotes", "Invalid value"),
    ("byte-order mark", b"\xef\xbb\xbf[audio]\nvolume = 0.5\n", 1,
     "byte-order mark", "Invalid statement"),
    ("key set twice", b"[audio]\nvolume = 0.5\ninput = 'default'\nvolume = 0.7\n", 4,
     "audio.volume is set twice (first on line 2)", "Cannot overwrite"),
    ("section twice", b"[audio]\nvolume = 0.5\n[wake]\n[audio]\ninput = 'x'\n", 4,
     "[audio] appears twice", "Cannot declare"),
    ("not utf-8", b"[audio]\n# caf\xe9\n", 2, "not UTF-8", "codec"),
    ("other syntax error", b"[audio]\nvolume = 0.5\n[wake\n", 3, "TOML syntax error", "\n\n"),
    ("unclosed list", b"[audio]\nvolume = 0.5\n[wake]\nmodels = ['alexa',\n", 4,
     "the file ends inside a value", "\n\n"),
]


@pytest.mark.parametrize(("content", "line", "words", "raw"), [c[1:] for c in SYNTAX],
                         ids=[c[0] for c in SYNTAX])
def test_syntax_mistakes_are_named_in_plain_words_with_their_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, line: int,
        words: str, raw: str) -> None:
    code, err = check(tmp_path, content, capsys)
    assert code == 2
    assert f"config.toml:{line}: " in err
    assert words in err
    assert raw not in err


def test_an_unquoted_secret_is_not_echoed_in_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = check(tmp_path, f"[cloud]\napi_key_env = {SECRET}\n".encode(), capsys)
    assert code == 2
    assert "config.toml:2: " in err
    assert SECRET not in err


VALUES = [
    ("[audio]\nvolume = 0.5\n\n[wake]\n# a comment\nthreshold = 3\n", 6, "wake.threshold"),
    ("[wake]\nmodels = [\n  'hey_jarvis',\n]\nthresholds = { alexa = 0.6 }\n", 5,
     "wake.thresholds.alexa"),
    ("[cloud.timeouts]\nstt = -1\n", 2, "cloud.timeouts.stt"),
    ("cloud.timeouts.stt = -1\n", 1, "cloud.timeouts.stt"),
    ("[cloud]\nsystem_prompt = '''\nx = 1\n'''\nbase_url = 'ftp://x'\n", 5, "cloud.base_url"),
    ("[audio]\nfrobnicate = 1\n", 2, "audio.frobnicate: unknown key"),
    # A key left at its default: the line of the key that made it wrong.
    ("[turn]\nend_silence = 0.5\nmax_seconds = 100\n", 3, "audio.buffer_seconds"),
    # Nothing better than the section it belongs to.
    ("[audio]\nvolume = 0.5\n\n[wake]\nmodels = []\n[gpio]\nled_kind = 'rgb'\n"
     "led_pins = [5]\n", 8, "gpio.led_pins"),
]


@pytest.mark.parametrize(("text", "line", "key"), VALUES)
def test_every_value_problem_has_the_line_of_its_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int,
        key: str) -> None:
    code, err = check(tmp_path, text.encode(), capsys)
    assert code == 2
    assert f"config.toml:{line}: {key}" in err, err


def test_every_problem_of_a_file_has_a_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[wake]\nthreshold = 3\n[audio]\nvolume = -1\nbogus = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = [p.split(": ", 1)[0] for p in info.value.problems]
    assert lines == [f"{path}:2", f"{path}:4", f"{path}:5"]


def test_key_lines_skip_strings_and_arrays_spanning_lines() -> None:
    text = ('[cloud]\nsystem_prompt = """\nbase_url = "no"\n"""\n'
            "[wake]\nmodels = [\n  'a = b',\n]\nthreshold = 0.5\n")
    found = key_lines(text)
    assert found["cloud.system_prompt"] == [2]
    assert "cloud.base_url" not in found
    assert found["wake.threshold"] == [9]


# --- what the path is ----------------------------------------------------------------


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    """In a subprocess with a timeout: a hang fails the test instead of the run."""
    return subprocess.run([sys.executable, "-m", "edge_agent", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo, 0o600)
    result = run_check(fifo)
    assert result.returncode == 2
    assert "not a regular file (a FIFO)" in result.stderr


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_a_symlink_to_a_device_is_refused(tmp_path: Path, target: str) -> None:
    link = tmp_path / "config.toml"
    link.symlink_to(target)
    result = run_check(link)
    assert result.returncode == 2
    assert "not a regular file (a character device)" in result.stderr


def test_a_directory_is_refused(tmp_path: Path) -> None:
    result = run_check(tmp_path)
    assert result.returncode == 2
    assert "not a regular file (a directory)" in result.stderr


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text("[audio]\nvolume = 0.25\n")
    real.chmod(0o600)
    (tmp_path / "config.toml").symlink_to(real)
    assert load_config(tmp_path / "config.toml").audio.volume == 0.25


def test_a_file_past_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[audio]\nvolume = 0.5\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10))
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="too big for a config file"):
        load_config(path)


def test_an_event_log_under_a_file_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Finding 12: check-config said OK and start crashed creating the directory."""
    (tmp_path / "afile").write_text("")
    text = f"[log]\nevents = '{tmp_path}/afile/sub/events.jsonl'\n"
    code, err = check(tmp_path, text.encode(), capsys)
    assert code == 2
    assert "config.toml:2: log.events:" in err and "is a file, not a directory" in err
    code, err = check(tmp_path, f"[log]\nevents = '{tmp_path}'\n".encode(), capsys)
    assert code == 2 and "is a directory" in err
    os.mkfifo(tmp_path / "fifo")
    code, err = check(tmp_path, f"[log]\nevents = '{tmp_path}/fifo'\n".encode(), capsys)
    assert code == 2 and "is not a regular file" in err


def test_a_file_that_changes_while_it_is_read_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An editor or `cat >` still writing: the size after the read tells."""
    import edge_agent.configfile as configfile

    path = tmp_path / "config.toml"
    path.write_text("[audio]\nvolume = 0.5\n")
    path.chmod(0o600)
    real_read = os.read
    reads = []

    def read_while_written(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        if not reads:  # the writer adds its next piece after our first read
            with path.open("a") as more:
                more.write("[cloud]\nenabled = false\n")
        reads.append(data)
        return data

    monkeypatch.setattr(configfile.os, "read", read_while_written)
    with pytest.raises(ConfigError, match="changed while it was read"):
        load_config(path)
