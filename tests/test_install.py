"""scripts/install and scripts/uninstall into a temporary root (--prefix).

The package is installed with --no-deps: building the venv with every
dependency (numpy, tflite, vosk, piper...) takes minutes and is what
scripts/setup already exercises; here what matters is what lands where, with
which modes, and that a second run changes nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import edge_agent

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "scripts" / "install"  # for the runs that install nothing

pytestmark = pytest.mark.skipif(
    shutil.which("systemctl") is None, reason="systemctl (from systemd) enables the unit")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of what install reads, so edits to the working tree while the
    tests run cannot make a second install differ from the first."""
    root = tmp_path_factory.mktemp("checkout")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("scripts", "systemd", "config", "edge_agent"):
        shutil.copytree(REPO / name, root / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, root / name)
    return root


def script(name: str, checkout: Path, *args: str) -> str:
    result = subprocess.run(
        [str(checkout / "scripts" / name), *args], capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under root that a change would touch: type, mode, size, mtime, target."""
    entries: dict[str, tuple] = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        target = str(path.readlink()) if path.is_symlink() else None
        entries[str(path.relative_to(root))] = (
            stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, target)
    return entries


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_twice_changes_nothing_and_keeps_an_edited_config(
    tmp_path: Path, checkout: Path
) -> None:
    real_etc_before = Path("/etc/edge-agent").exists()
    root = tmp_path / "root"
    out = script("install", checkout, "--prefix", str(root), "--no-deps")
    assert "skipped under --prefix: system user edge-agent" in out

    etc = root / "etc" / "edge-agent"
    config, secrets = etc / "config.toml", etc / "secrets"
    unit = root / "etc" / "systemd" / "system" / "edge-agent.service"
    assert config.read_text() == (checkout / "config" / "edge-agent.toml").read_text()
    assert (mode(etc), mode(config), mode(secrets), mode(unit)) == (0o755, 0o640, 0o600, 0o644)
    assert "OPENAI_API_KEY" in secrets.read_text()
    assert unit.read_bytes() == (checkout / "systemd" / "edge-agent.service").read_bytes()
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "edge-agent.service"
    assert str(wants.readlink()) == "/etc/systemd/system/edge-agent.service"
    venv = root / "opt" / "edge-agent"
    assert os.access(venv / "bin" / "edge-agent", os.X_OK)
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import edge_agent; print(edge_agent.__version__)"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path).stdout.strip()
    assert version == edge_agent.__version__
    # The install never reaches outside its prefix.
    assert Path("/etc/edge-agent").exists() == real_etc_before

    config.write_text(config.read_text() + "\n[log]\nlevel = \"debug\"\n")
    before = snapshot(root)
    out = script("install", checkout, "--prefix", str(root), "--no-deps")
    assert snapshot(root) == before
    assert "kept existing" in out
    assert "nothing to do" in out
    assert config.read_text().endswith("level = \"debug\"\n")


def test_install_repairs_a_secrets_file_others_can_read(tmp_path: Path, checkout: Path) -> None:
    root = tmp_path / "root"
    secrets = root / "etc" / "edge-agent" / "secrets"
    secrets.parent.mkdir(parents=True)
    secrets.write_text("OPENAI_API_KEY=sk-test\n")
    secrets.chmod(0o644)
    out = script("install", checkout, "--prefix", str(root), "--no-deps")
    assert mode(secrets) == 0o600
    assert secrets.read_text() == "OPENAI_API_KEY=sk-test\n"  # the key itself is never touched
    assert f"chmod 0600 {secrets}" in out


def test_dry_run_changes_nothing(tmp_path: Path, checkout: Path) -> None:
    empty = tmp_path / "empty"
    out = script("install", checkout, "--prefix", str(empty), "--dry-run")
    assert not empty.exists()
    assert "would run: systemctl --root=" in out
    assert f"would create {empty}/etc/edge-agent/secrets (mode 0600)" in out

    root = tmp_path / "root"
    script("install", checkout, "--prefix", str(root), "--no-deps")
    (root / "etc" / "edge-agent" / "config.toml").chmod(0o600)
    before = snapshot(root)
    out = script("install", checkout, "--prefix", str(root), "--no-deps", "--dry-run")
    assert snapshot(root) == before
    assert "would run: chmod 0640" in out

    out = script("uninstall", checkout, "--prefix", str(root), "--dry-run", "--purge")
    assert snapshot(root) == before
    assert "would run: rm -rf" in out


def test_uninstall_keeps_config_unless_purged(tmp_path: Path, checkout: Path) -> None:
    root = tmp_path / "root"
    script("install", checkout, "--prefix", str(root), "--no-deps")
    state = root / "var" / "lib" / "edge-agent"
    state.mkdir(parents=True)
    (state / "timers.json").write_text("[]")

    out = script("uninstall", checkout, "--prefix", str(root))
    system = root / "etc" / "systemd" / "system"
    assert not (system / "edge-agent.service").exists()
    assert not (system / "multi-user.target.wants" / "edge-agent.service").is_symlink()
    assert not (root / "opt" / "edge-agent").exists()
    assert (root / "etc" / "edge-agent" / "config.toml").is_file()
    assert (state / "timers.json").is_file()
    assert "kept" in out

    script("uninstall", checkout, "--prefix", str(root))  # again: nothing left to remove, no error
    out = script("uninstall", checkout, "--prefix", str(root), "--purge")
    assert not (root / "etc" / "edge-agent").exists()
    assert not state.exists()
    assert "skipped under --prefix: removing the system user" in out


def test_refuses_to_run_on_the_real_root_without_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        result = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=60)
    else:
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(INSTALL)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert "run as root" in result.stderr


def test_unknown_options_are_refused() -> None:
    result = subprocess.run([str(INSTALL), "--prefx", "/tmp/x"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown option --prefx" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the real-root plan includes root-only steps")
def test_dry_run_on_this_machine_shows_the_whole_plan_and_touches_nothing(
    checkout: Path,
) -> None:
    watched = [Path("/opt/edge-agent"), Path("/etc/edge-agent"),
               Path("/etc/systemd/system/edge-agent.service")]
    before = [p.exists() for p in watched]
    user_exists = subprocess.run(["getent", "passwd", "edge-agent"],
                                 capture_output=True, timeout=30).returncode == 0
    out = script("install", checkout, "--dry-run")
    if not user_exists:
        assert "would run: useradd --system --user-group" in out
    for group in ("audio", "gpio"):
        exists = subprocess.run(["getent", "group", group], capture_output=True,
                                timeout=30).returncode == 0
        assert (f"would run: groupadd --system {group}" in out) != exists
        assert f"would run: usermod --append --groups {group} edge-agent" in out or user_exists
    if not before[0]:
        assert "would run: " in out and "-m venv /opt/edge-agent" in out
    if not before[1]:
        assert "would create /etc/edge-agent/secrets (mode 0600)" in out
    script("uninstall", checkout, "--dry-run", "--purge")
    assert [p.exists() for p in watched] == before


@pytest.mark.skipif(os.geteuid() != 0, reason="the real-root plan includes root-only steps")
def test_dry_run_moves_operators_out_of_the_service_group(tmp_path: Path,
                                                         checkout: Path) -> None:
    """An install from before edge-agent-control told operators to join edge-agent,
    the service's own group: they move to the control group (shown by a dry run
    against a group database that lists two of them)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    getent = shim / "getent"
    getent.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "group edge-agent" ]; then\n'
        "    echo edge-agent:x:990:edge-agent,alice,bob; exit 0\n"
        "fi\n"
        f'exec {shutil.which("getent")} "$@"\n')
    getent.chmod(0o755)
    result = subprocess.run(
        [str(checkout / "scripts" / "install"), "--dry-run"], capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHON": sys.executable,
                          "PATH": f"{shim}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stdout + result.stderr
    for user in ("alice", "bob"):
        assert f"would run: usermod --append --groups edge-agent-control {user}" in result.stdout
        assert f"would run: gpasswd --delete {user} edge-agent" in result.stdout
    assert "gpasswd --delete edge-agent" not in result.stdout


def test_the_cli_is_linked_onto_path_and_unlinked_on_uninstall(
        tmp_path: Path, checkout: Path) -> None:
    """`edge-agent status` and `sudo edge-agent doctor`, as the README and doctor's
    fixes write them, reach the service's CLI."""
    root = tmp_path / "root"
    script("install", checkout, "--prefix", str(root), "--no-deps")
    link = root / "usr" / "local" / "bin" / "edge-agent"
    assert str(link.readlink()) == "/opt/edge-agent/bin/edge-agent"  # where it runs
    assert os.access(root / "opt" / "edge-agent" / "bin" / "edge-agent", os.X_OK)
    script("uninstall", checkout, "--prefix", str(root))
    assert not link.is_symlink()

    link.write_text("#!/bin/sh\n")  # someone else's edge-agent: left alone
    out = script("install", checkout, "--prefix", str(root), "--no-deps")
    assert link.read_text() == "#!/bin/sh\n" and "kept" in out
    script("uninstall", checkout, "--prefix", str(root))
    assert link.read_text() == "#!/bin/sh\n"
