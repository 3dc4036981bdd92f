"""`edge-agent doctor`: everything a spoken conversation needs, checked in one
go by an owner over SSH, each check a pass/fail line with the fix.

Config, API key and one cheap cloud request (GET /models: the key is sent, never
shown), the microphone with a live level meter and the wake-word scores while
the owner speaks, a test tone on the speaker, the offline models where the daemon
looks, the systemd unit, the permissions of the config and key files, and the
user's groups. A running daemon holds the audio devices: then its control socket
reports on them instead, and doctor does not fight it for them.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edge_agent.doctor.audio import Out, check_microphone_and_wake, check_speaker, daemon_audio
from edge_agent.doctor.cloud import check_cloud
from edge_agent.doctor.findings import Finding, fail, format_finding, ok, skip
from edge_agent.doctor.system import (
    check_config,
    check_echo,
    check_file_modes,
    check_groups,
    check_models,
    check_service,
    find_key,
)
from edge_agent.offline.models import install_dir
from edge_agent.service import control

DEFAULT_LISTEN_SECONDS = 5.0

__all__ = ["DEFAULT_LISTEN_SECONDS", "Finding", "format_finding", "run"]



def run(config: Path | None, *, socket_path: Path | None = None,
        listen_seconds: float = DEFAULT_LISTEN_SECONDS, out: Out = print) -> int:
    """Every check, each printed as it finishes; 1 if any failed."""
    # The findings say what the engines' own error logs would, with the fix.
    logging.disable(logging.ERROR)
    try:
        return _run(config, socket_path, listen_seconds, out)
    finally:
        logging.disable(logging.NOTSET)


def _run(config: Path | None, socket_path: Path | None, listen_seconds: float,
         out: Out) -> int:
    failed = False

    def report(*findings: Finding) -> None:
        nonlocal failed
        for finding in findings:
            failed = failed or finding.ok is False
            out(format_finding(finding))

    settings, finding = check_config(config)
    report(finding)
    socket_path = socket_path or control.find_socket(settings.service.control_socket)
    status: dict | None = None
    unanswered: control.ControlError | None = None
    try:
        status = control.request(socket_path, "status")
    except control.ControlError as exc:
        unanswered = exc
    key, key_source, finding = find_key(settings, status)
    report(finding)
    report(check_cloud(settings, key, key_source))
    # Anything but "nothing listens there" means a daemon holds the devices.
    if unanswered is not None and "not running" not in str(unanswered):
        report(fail("daemon", f"a daemon at {socket_path} does not answer: {unanswered}",
                     "sudo edge-agent doctor; if it hangs: sudo systemctl restart "
                     "edge-agent"),
               *(skip(check, "held by the daemon") for check in
                 ("microphone", "speaker", "wake word")))
        socket_path = None
    if status is not None:
        report(ok("daemon", f"running, answering on {socket_path}"),
               *daemon_audio(status, socket_path))
    elif socket_path is not None:
        report(skip("daemon", "not running: doctor opens the audio devices itself"))
        report(*asyncio.run(check_microphone_and_wake(settings, listen_seconds, out)))
        report(asyncio.run(check_speaker(settings)))
    out(f"      models directory: {install_dir(settings)} (edge-agent models list)")
    report(*check_models(settings), check_echo(settings))
    report(check_service(), *check_file_modes(settings), check_groups(settings))
    out("some checks failed: see each fix above" if failed else "all checks passed")
    return 1 if failed else 0
