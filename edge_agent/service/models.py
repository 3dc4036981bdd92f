"""`edge-agent models list|install`: the on-device models where the daemon looks
for them (edge_agent.offline.models has the rule), and fetching them with the
checkout's scripts/fetch-models."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_agent.config import Settings
from edge_agent.offline.models import check_piper, check_vosk, install_dir, models_dirs

FETCH_MODELS = Path(__file__).resolve().parents[2] / "scripts" / "fetch-models"
"""In a source checkout; an installed package (/opt/edge-agent) has no scripts/."""


def list_models(settings: Settings) -> int:
    """Print what the daemon would load and what is in each place it looks;
    1 when a model it needs is missing."""
    missing = 0
    for check in (check_vosk(settings), check_piper(settings)):
        if check.problem is None:
            print(f"{check.what}: {check.path}")
        else:
            missing += 1
            print(f"{check.what}: MISSING: {check.problem}; {check.fix}")
    print(f"models directory (models install puts them here): {install_dir(settings)}")
    for directory in models_dirs(settings.state_dir):
        try:
            names = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            names = ["(does not exist)"]
        except OSError as exc:
            names = [f"(cannot list: {exc.strerror})"]
        print(f"  searched {directory}: {', '.join(names) or '(empty)'}")
    return 1 if missing else 0


def install_models(settings: Settings, names: Sequence[str], *, dest: Path | None,
                   extra: Sequence[str] = ()) -> int:
    """Run scripts/fetch-models into the directory this daemon looks in."""
    if not FETCH_MODELS.is_file():
        print(f"edge-agent: {FETCH_MODELS} is not here (an installed package has no "
              "scripts/); run scripts/fetch-models from the edge-agent source checkout",
              file=sys.stderr)
        return 1
    target = dest or install_dir(settings)
    command = [sys.executable, str(FETCH_MODELS), "--dest", str(target), *extra, *names]
    return subprocess.run(command, check=False).returncode
