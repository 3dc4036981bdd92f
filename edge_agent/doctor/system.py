"""The checks of the device itself: the config and the API key, the offline
models, the systemd unit, file modes and the user's groups."""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from edge_agent.audio.echo import FRAME, speex_filter
from edge_agent.config import (
    Secret,
    Settings,
    default_config_path,
    load_api_key,
    load_config,
    writable_by_others,
)
from edge_agent.doctor.findings import Finding, fail, ok, skip
from edge_agent.errors import CAUSES, AudioDeviceError, ConfigError
from edge_agent.offline.models import check_piper, check_vosk
from edge_agent.service.report import cloud_words

SECRETS_FILE = Path("/etc/edge-agent/secrets")
"""The service's EnvironmentFile (systemd/edge-agent.service), where its key lives."""
UNIT = "edge-agent"



def check_config(path: Path | None) -> tuple[Settings, Finding]:
    """The settings to check the rest with (defaults if the file is bad) and the finding."""
    path = path or default_config_path()
    if not path.exists():
        return Settings(), ok("config", f"no file at {path}: built-in defaults "
                                         "(start from config/edge-agent.toml)")
    if not os.access(path, os.R_OK):
        return Settings(), fail("config", f"{path}: this user may not read it",
                                 "sudo edge-agent doctor (scripts/install lets only root "
                                 "and the service's own group read it; operators are in "
                                 "edge-agent-control, not in that group)")
    try:
        settings = load_config(path)
    except ConfigError as exc:
        return Settings(), fail("config", "; ".join(exc.problems),
                                 f"correct the file, then: edge-agent check-config {path}")
    return settings, ok("config", f"{path}: valid")


def find_key(settings: Settings,
             daemon: dict[str, Any] | None) -> tuple[Secret | None, str, Finding]:
    """The key the daemon would send, where it comes from, and the finding. The
    service reads SECRETS_FILE as its environment, so doctor looks there too; an
    operator may not read it (root only), and then the running daemon's status
    (``daemon``, None if none answered) says how its key fares."""
    cloud = settings.cloud
    name = cloud.api_key_env
    if cloud.api_key_file:
        try:
            key, _ = load_api_key(cloud)
        except ConfigError as exc:
            return None, "", fail("API key", "; ".join(exc.problems),
                                   f"make {cloud.api_key_file} readable by this user and the "
                                   "service only: sudo chmod 640, owner root:edge-agent")
        return key, cloud.api_key_file, ok("API key", f"present in {cloud.api_key_file}")
    if os.environ.get(name, "").strip():
        return Secret(os.environ[name].strip()), f"${name}", ok(
            "API key", f"present in ${name}")
    where = f"{name}=... in {SECRETS_FILE} (the service reads it) or export {name}=... " \
            "for a daemon run by hand"
    try:
        lines = SECRETS_FILE.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        if daemon is not None:
            return None, "", key_from_daemon(daemon, name)
        return None, "", skip(
            "API key", f"cannot read {SECRETS_FILE} as {_user(os.geteuid())} "
                       f"({exc.strerror or exc}; the service reads it as root); run doctor "
                       "with sudo to check the key")
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key.strip().removeprefix("export ").strip() == name:
            value = value.strip().strip("'\"")
            if value:
                return Secret(value), str(SECRETS_FILE), ok(
                    "API key", f"present in {SECRETS_FILE}")
    return None, "", fail("API key", f"missing: ${name} is not set and {SECRETS_FILE} has "
                                      f"no {name}", f"put {where}")




def key_from_daemon(status: dict[str, Any], name: str) -> Finding:
    """The key check as the running daemon knows it, for a caller who may not read
    SECRETS_FILE: missing, refused or working (the key itself never leaves it)."""
    cloud = status.get("cloud")
    edit = f"sudoedit {SECRETS_FILE}, then sudo systemctl restart {UNIT}"
    if not isinstance(cloud, dict):
        return skip("API key", f"cannot read {SECRETS_FILE} and the running daemon does not "
                               "say how its key fares; run doctor with sudo to check the key")
    cause = cloud.get("cause")
    if cause == "disabled":
        return skip("API key", "the running daemon's cloud is disabled (cloud.enabled)")
    if cause == "no_key":
        return fail("API key", f"the running daemon has none: {SECRETS_FILE} sets no {name}",
                    f"add {name}=... with {edit}")
    if cause == "key_refused":
        return fail("API key", f"the running daemon's key was refused "
                               f"({cloud.get('reason') or CAUSES['key_refused']})",
                    f"check the key with your provider and replace {name} with {edit}")
    if cloud.get("state") == "online":
        return ok("API key", "the running daemon's key is accepted, as its status says "
                             f"(this user may not read {SECRETS_FILE})")
    return ok("API key", f"the running daemon has one, not yet accepted: {cloud_words(cloud)}")


def check_echo(settings: Settings) -> Finding:
    """Whether the echo canceller loads (libspeexdsp): without it the speaker
    still works, but hears itself and needs the raised wake threshold."""
    name = "echo cancellation"
    if not settings.echo.cancel:
        return skip(name, "off (echo.cancel = false): wake.playback_threshold while it speaks")
    try:
        speex_filter(FRAME, settings.echo.tail_ms)
    except AudioDeviceError as exc:
        return fail(name, str(exc), "sudo apt-get install libspeexdsp1")
    return ok(name, f"Speex echo canceller loaded ({settings.echo.tail_ms} ms tail)")


def check_models(settings: Settings) -> list[Finding]:
    findings = []
    for name, model in (("Vosk model", check_vosk(settings)),
                        ("Piper voice", check_piper(settings))):
        if model.problem is None:
            findings.append(ok(name, str(model.path)))
        else:
            findings.append(fail(name, model.problem, model.fix))
    return findings


def check_service() -> Finding:
    if shutil.which("systemctl") is None:
        return skip("service", "no systemctl on this machine")
    try:
        shown = subprocess.run(
            ["systemctl", "show", UNIT, "--property=LoadState,ActiveState,SubState,"
             "UnitFileState"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return skip("service", f"systemctl did not answer ({exc})")
    if shown.returncode != 0:
        return skip("service", f"systemd is not running here "
                                f"({(shown.stderr.strip().splitlines() or ['?'])[0]})")
    props = dict(line.partition("=")[::2] for line in shown.stdout.splitlines())
    if props.get("LoadState") == "not-found":
        return skip("service", "not installed as a service (sudo scripts/install installs it)")
    state = f"{props.get('ActiveState')} ({props.get('SubState')}), " \
            f"{props.get('UnitFileState') or 'unknown'} at boot"
    if props.get("ActiveState") == "failed":
        return fail("service", state, "see why: journalctl -u edge-agent -e; then "
                                       "sudo systemctl restart edge-agent")
    return ok("service", state)


def check_file_modes(settings: Settings) -> list[Finding]:
    """The config must not be writable by others; a key file must not be readable
    by every user either."""
    findings = []
    # A secret's fix: the modes scripts/install sets. systemd reads SECRETS_FILE as
    # root; the service reads a cloud.api_key_file itself, as its group.
    files: list[tuple[Path | None, str]] = [(settings.source, ""),
                                            (SECRETS_FILE, "600 {0}; sudo chown root:root {0}")]
    if settings.cloud.api_key_file:
        files.append((Path(settings.cloud.api_key_file),
                      "640 {0}; sudo chown root:edge-agent {0}"))
    for path, secret in files:
        if path is None:
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            findings.append(fail("permissions", f"{path}: cannot stat ({exc.strerror})",
                                  "run doctor with sudo"))
            continue
        mode = stat.S_IMODE(st.st_mode)
        owner = f"{_user(st.st_uid)}:{_group(st.st_gid)}"
        if writable_by_others(st):
            findings.append(fail("permissions", f"{path}: writable by others (mode {mode:o})",
                                  f"sudo chmod go-w {path}"))
        elif secret and mode & stat.S_IROTH:
            findings.append(fail("permissions", f"{path}: the API key is readable by every "
                                                 f"user (mode {mode:o}, {owner})",
                                  "sudo chmod " + secret.format(path)))
        else:
            findings.append(ok("permissions", f"{path}: mode {mode:o}, {owner}"))
    return findings


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_groups(settings: Settings) -> Finding:
    """A daemon run by hand needs the audio group (and gpio for a button and LEDs);
    the service gets them from its unit (SupplementaryGroups)."""
    if os.geteuid() == 0:
        return ok("groups", "root (the service itself runs as edge-agent in audio and gpio)")
    mine = {_group(g) for g in os.getgroups()} | {_group(os.getegid())}
    needed = ["audio"]
    if settings.gpio.enabled:
        with contextlib.suppress(KeyError):
            needed.append(grp.getgrnam("gpio").gr_name)
    missing = [g for g in needed if g not in mine]
    if missing:
        return fail("groups", f"{_user(os.geteuid())} is not in {', '.join(missing)}",
                     f"sudo usermod -aG {','.join(missing)} $USER, then log out and in again")
    return ok("groups", f"{_user(os.geteuid())} is in {', '.join(needed)}")
