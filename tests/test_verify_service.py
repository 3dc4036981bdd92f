"""scripts/verify-service, the owner's check of the live service on the Pi, here
against a stand-in systemctl (this machine has no systemd as PID 1): it reports
each check and fails on a sandbox setting that was not applied."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "verify-service"

APPLIED = {
    "ActiveState": "active", "SubState": "running", "MainPID": str(os.getpid()),
    "WatchdogUSec": "20s", "Result": "success", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
    "MemoryDenyWriteExecute": "yes", "RestrictRealtime": "yes", "LockPersonality": "yes",
    "DevicePolicy": "closed", "CapabilityBoundingSet": "", "LimitNOFILE": "1024",
}


def verify(tmp_path: Path, **changed: str) -> subprocess.CompletedProcess[str]:
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    props = {**APPLIED, **changed}
    cases = "\n".join(f'        {key}) echo "{value}" ;;' for key, value in props.items())
    (shim / "systemctl").write_text(f'''#!/bin/bash
if [ "$1" = show ]; then
    case $3 in
{cases}
    esac
    exit 0
fi
[ "$1" = reload ]
''')
    (shim / "systemctl").chmod(0o755)
    return subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"})


def test_reports_every_check(tmp_path: Path) -> None:
    result = verify(tmp_path)
    out = result.stdout
    for line in ("ok      READY: edge-agent.service is active/running",
                 "ok      watchdog: WatchdogSec=20s",
                 "ok      reload: systemctl reload returned",
                 "ok      sandbox: ProtectSystem=strict",
                 "ok      sandbox: LimitNOFILE=1024"):
        assert line in out, out
    # This test process is not sandboxed and no daemon runs here: those fail.
    assert "FAILED  sandbox: process" in out
    assert "FAILED  socket: no control socket" in out
    assert result.returncode == 1


def test_a_setting_not_applied_fails(tmp_path: Path) -> None:
    out = verify(tmp_path, ProtectHome="no", ActiveState="activating").stdout
    assert "FAILED  sandbox: ProtectHome=no (want yes)" in out
    assert "FAILED  READY: edge-agent.service is activating/running" in out
