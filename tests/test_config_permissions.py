"""The daemon refuses a config or key file that other users can write (they
could point it at any server or model) and warns when a key file is readable
by every user; through check-config, load_api_key and the real `edge-agent run`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import CloudSettings, load_api_key, load_config
from edge_agent.errors import ConfigError
from edge_agent.tools.voices import silence, write_wav

KEY = "sk-permissions-test-NEVER-PRINTED-42"


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    if mode & stat.S_IWGRP:
        share_group(path)
    return path


def share_group(path: Path) -> None:
    """Give ``path`` a group other users are in (not its owner's private group)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to a shared group")
    os.chown(path, -1, 65534)


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646, 0o620, 0o602])
def test_a_config_others_can_write_is_refused(
    tmp_path: Path, mode: int, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path / "config.toml", "[audio]\nvolume = 0.5\n", mode)
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"writable by other users (mode {mode:o})" in err
    assert f"chmod go-w {config}" in err


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o400])
def test_a_config_only_its_owner_can_write_is_accepted(tmp_path: Path, mode: int) -> None:
    config = write(tmp_path / "config.toml", "[audio]\nvolume = 0.5\n", mode)
    assert load_config(config).audio.volume == 0.5


@pytest.mark.skipif(os.geteuid() != 0, reason="root:root is root's private group")
@pytest.mark.parametrize("mode", [0o664, 0o660])
def test_group_write_in_the_owners_private_group_is_accepted(
    tmp_path: Path, mode: int
) -> None:
    """A umask of 002 (user private groups) writes every file 664: nobody else may
    write it, so refusing it would only strand the owner."""
    config = tmp_path / "config.toml"
    config.write_text("[audio]\nvolume = 0.5\n")
    config.chmod(mode)
    assert load_config(config).audio.volume == 0.5


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_config_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", "[audio]\nvolume = 0.5\n", 0o644)
    os.chown(config, 65534, 65534)  # nobody
    # Root may read anything; what matters is that root does not run nobody's settings.
    with pytest.raises(ConfigError, match="owned by another user"):
        load_config(config)


@pytest.mark.parametrize("mode", [0o662, 0o660, 0o622])
def test_a_key_file_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = write(tmp_path / "key", KEY + "\n", mode)
    config = write(tmp_path / "config.toml", f"[cloud]\napi_key_file = '{key_file}'\n", 0o600)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert f"{key_file}: writable by other users" in str(refused.value)
    assert KEY not in str(refused.value)
    # The key loader refuses it too: the key is read again on a reload, and the file
    # may have changed since the config was checked.
    with pytest.raises(ConfigError, match="writable by other users"):
        load_api_key(CloudSettings(api_key_file=str(key_file)))


@pytest.mark.parametrize(("mode", "warned"), [
    (0o644, True), (0o604, True), (0o640, False), (0o600, False), (0o400, False)])
def test_a_key_file_everyone_can_read_is_used_with_a_warning(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    key_file = write(tmp_path / "key", KEY + "\n", mode)
    config = write(tmp_path / "config.toml", f"[cloud]\napi_key_file = '{key_file}'\n", 0o600)
    key, warnings = load_api_key(load_config(config).cloud)
    assert key == KEY
    if warned:
        assert warnings == [f"{key_file}: API key file is readable by every user; "
                            f"run: chmod o-r {key_file}"]
    else:
        assert warnings == []
    assert all(KEY not in w for w in warnings)


@pytest.mark.slow
def test_the_daemon_refuses_to_start_on_a_writable_config(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", "[gpio]\nenabled = false\n", 0o666)
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert "writable by other users" in result.stderr


@pytest.mark.slow
def test_the_daemon_warns_about_a_readable_key_file(tmp_path: Path) -> None:
    key_file = write(tmp_path / "key", KEY + "\n", 0o644)
    write_wav(tmp_path / "in.wav", silence(0.5))
    config = write(tmp_path / "config.toml", f'''
[audio]
input = "{tmp_path}/in.wav"
output = "{tmp_path}/out.wav"
[cloud]
base_url = "http://127.0.0.1:9/v1"
api_key_file = "{key_file}"
[gpio]
enabled = false
[service]
state_dir = "{tmp_path}/state"
control_socket = "{tmp_path}/control.sock"
''', 0o600)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path)
    lines: list[str] = []
    try:
        assert daemon.stderr is not None
        deadline = time.monotonic() + 120
        for line in daemon.stderr:
            lines.append(line)
            if "daemon: ready:" in line or time.monotonic() > deadline:
                break
    finally:
        daemon.terminate()
        rest, _ = daemon.communicate(timeout=30)
    log = "".join(lines) + (rest or "")
    assert "API key file is readable by every user" in log, log[-3000:]
    assert KEY not in log


@pytest.mark.parametrize("mode", [0o666, 0o662, 0o620])
def test_an_mqtt_password_file_others_can_write_fails_check_config(
    tmp_path: Path, mode: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused at config load like the API key file, not only when the daemon reads it."""
    password = write(tmp_path / "mqtt.pass", KEY + "\n", mode)
    config = write(tmp_path / "config.toml",
                   f"[mqtt]\nhost = 'broker.lan'\npassword_file = '{password}'\n", 0o600)
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{password}: writable by other users (mode {mode:o}); run: chmod go-w {password}" \
        in err
    assert KEY not in err
    with pytest.raises(ConfigError, match="writable by other users"):
        load_config(config)


def test_an_mqtt_password_file_is_not_checked_while_mqtt_is_off(tmp_path: Path) -> None:
    password = write(tmp_path / "mqtt.pass", KEY + "\n", 0o666)
    config = write(tmp_path / "config.toml", f"[mqtt]\npassword_file = '{password}'\n", 0o600)
    assert load_config(config).mqtt.password_file == str(password)
