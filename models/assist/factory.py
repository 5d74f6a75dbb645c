"""Pick the assistance back end from the settings and say which one is active.

``assist_backend``:
- ``auto``: SAM when ``sam_checkpoint`` is set, else MobileSAM when ``mobile_sam_checkpoint``
  is set, else the newest trained ``assist_net`` artifact, else GrabCut;
- ``sam``, ``mobile_sam``, ``assist_net``, ``grabcut``, ``box``: exactly that one (an error
  sentence when its file is missing).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.config import env_name, get_settings
from models.assist.base import Assistant
from models.base import CheckpointError

#: Loaded assist_net stages by (file, mtime): the API makes an assistant per prepared image.
_NETS: dict[tuple[str, int], Any] = {}

BACKENDS = ("auto", "sam", "mobile_sam", "assist_net", "grabcut", "box")


def latest_assist_net(artifacts_dir: str | Path) -> Path | None:
    """The highest ``assist_net-vN.pt`` in the artifacts folder or its ``assist_net/`` folder
    (where ``services.training.registry`` files versions), if any."""
    d = Path(artifacts_dir)
    best: tuple[int, Path] | None = None
    found = (
        [*d.glob("assist_net-v*.pt"), *d.glob("assist_net/assist_net-v*.pt")] if d.is_dir() else []
    )
    for p in found:
        m = re.fullmatch(r"assist_net-v(\d+)\.pt", p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return None if best is None else best[1]


def choose_backend(
    settings: Any, *, assist_net_path: str | Path | None = None
) -> tuple[str, Path | None]:
    """Which back end :func:`make_assistant` builds, without building it: ``(name, file)``,
    name one of ``sam``, ``mobile_sam``, ``assist_net``, ``grabcut``, ``box``; file is the
    assist_net artifact for ``assist_net`` (None when none is there), else None."""
    choice = getattr(settings, "assist_backend", "auto") or "auto"
    if choice not in BACKENDS:
        raise ValueError(f"assist_backend {choice!r} is not one of {', '.join(BACKENDS)}")
    if choice == "sam" or (choice == "auto" and settings.sam_checkpoint):
        return "sam", None
    if choice == "mobile_sam" or (choice == "auto" and settings.mobile_sam_checkpoint):
        return "mobile_sam", None
    if choice in ("auto", "assist_net"):
        path = assist_net_path or latest_assist_net(settings.artifacts_dir)
        if path is not None or choice == "assist_net":
            return "assist_net", None if path is None else Path(path)
    return ("box" if choice == "box" else "grabcut"), None


def make_assistant(settings: Any = None, *, assist_net_path: str | Path | None = None) -> Assistant:
    """Build the configured back end; ``.backend`` names it (the UI and API show it)."""
    if settings is None:
        settings = get_settings()
    name, path = choose_backend(settings, assist_net_path=assist_net_path)
    cache_dir = Path(settings.cache_dir) / "embeddings"
    device = getattr(settings, "device", "auto")
    if name == "sam":
        from models.assist.sam import SamAssistant

        if not settings.sam_checkpoint:
            raise CheckpointError(
                f"assist_backend is 'sam' but {env_name('sam_checkpoint')} is not set; "
                "point it at a downloaded sam_vit_*.pth file"
            )
        return SamAssistant(settings.sam_model_type, settings.sam_checkpoint, cache_dir, device)
    if name == "mobile_sam":
        from models.assist.sam import MobileSamAssistant

        return MobileSamAssistant(settings.mobile_sam_checkpoint, cache_dir, device)
    if name == "assist_net":
        if path is None:
            raise CheckpointError(
                f"assist_backend is 'assist_net' but no assist_net-v*.pt is in {settings.artifacts_dir}; "
                f"train one with `panelbeater train assist_net`"
            )
        from models.assist.learned import AssistNetStage, LearnedAssistant

        key = (str(path), path.stat().st_mtime_ns)
        if key not in _NETS:
            _NETS.clear()  # keep only the newest version in memory
            _NETS[key] = AssistNetStage.load(path, device="cpu")
        return LearnedAssistant(_NETS[key], version=path.stem)
    if name == "box":
        from models.assist.grabcut import BoxAssistant

        return BoxAssistant()
    from models.assist.grabcut import GrabCutAssistant

    return GrabCutAssistant()
