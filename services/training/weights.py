"""The weights folder: checkpoints a team brings (SAM, MobileSAM, YOLO, ResNet34, Mask R-CNN,
ViT), checked once when added and kept by content.

Layout under ``Settings.weights_dir`` (``<data_dir>/weights/``):

- ``<sha256[:16]>-<name>.pt``: the file's bytes, as added (never rewritten);
- ``<name>.json``: its record (:class:`WeightsRecord`): kind, size, sha256, details such as a
  YOLO's class count or a SAM's ViT size, and how it was read.

A file is copied into the folder first (hashing as it copies) and the copy is what is
inspected, so the record always describes the stored bytes. Adding the same bytes again
answers the existing record. A file is *used* while a setting points at it (any path
setting, e.g. ``sam_checkpoint``) or a model version's config or training snapshot names its
stored path, file name or sha256; :func:`remove_weights` refuses while it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.config import get_settings
from core.files import write_text_atomic
from db.models import ModelVersion, Project
from models.base import CheckpointError
from services.errors import Invalid, NotFound

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class WeightsInUse(Invalid):
    """Removing weights that a setting or a model version still uses."""


@dataclass
class WeightsRecord:
    name: str
    kind: str
    #: file name inside the weights folder
    file: str
    sha256: str
    size: int
    details: dict[str, Any] = field(default_factory=dict)
    #: how the file was read when not as a plain weights-only state dict
    note: str = ""
    #: the path it was added from
    source: str = ""
    added_at: str = ""

    @property
    def path(self) -> Path:
        return weights_dir() / self.file

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def weights_dir() -> Path:
    return get_settings().weights_dir


def _record_path(name: str) -> Path:
    return weights_dir() / f"{name}.json"


def _default_name(src: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", src.stem).strip("-._") or "weights"
    return stem[:64]


def _check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise Invalid(
            f"weights name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit"
        )
    return name


def list_weights() -> list[WeightsRecord]:
    """Every record in the weights folder, by name."""
    d = weights_dir()
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.json")):
        try:
            out.append(WeightsRecord(**json.loads(p.read_text())))
        except (ValueError, TypeError):
            continue  # not a record of ours
    return out


def get_weights(name: str) -> WeightsRecord:
    """The record named ``name``. Raises NotFound listing the names there are."""
    p = _record_path(name) if NAME_RE.match(name) else None
    if p is None or not p.is_file():
        names = [r.name for r in list_weights()]
        raise NotFound(
            f"no weights named {name!r} in {weights_dir()}; "
            + (f"there are: {', '.join(names)}" if names else "add some with `weights add FILE`")
        )
    return WeightsRecord(**json.loads(p.read_text()))


def resolve_weights(name_or_path: str) -> Path:
    """A stored file by its name, or an existing file path as given. Raises Invalid for a path
    (it has a folder or a suffix) whose file does not exist, NotFound listing the names there
    are for an unknown name."""
    if NAME_RE.match(name_or_path) and _record_path(name_or_path).is_file():
        return get_weights(name_or_path).path
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if "/" in name_or_path or p.suffix:
        raise Invalid(
            f"weights file {p} does not exist; give the name of a file in the weights folder "
            "(`panelbeater weights list`) or the path of one you downloaded (nothing is "
            "downloaded for you)"
        )
    get_weights(name_or_path)  # raises NotFound with the names there are
    return p


def _copy_hashing(src: Path, dst: Path) -> str:
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def add_weights(
    path: str | Path, *, kind: str | None = None, name: str | None = None, trust: bool = False
) -> tuple[WeightsRecord, bool]:
    """Copy ``path`` into the weights folder after checking what it holds.

    ``kind``: refuse a file of another kind. ``trust``: read a pickle naming classes outside
    torch/torchvision/timm/Ultralytics as a full pickle (it can run code). Returns the record
    and whether it is new (False: the same bytes were already there, under its name).
    Raises Invalid with a sentence naming the file and what to do."""
    src = Path(path).expanduser()
    if not src.is_file():
        raise Invalid(f"weights file {src} does not exist; give the path of a downloaded file")
    if name is not None:
        _check_name(name)
    d = weights_dir()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".tmp-{uuid.uuid4().hex}.pt"
    try:
        sha = _copy_hashing(src, tmp)
        for rec in list_weights():
            if rec.sha256 == sha:
                if name is not None and name != rec.name:
                    raise Invalid(
                        f"weights file {src} is already in the weights folder as {rec.name!r} "
                        f"(same sha256); use that name, or remove it first"
                    )
                return rec, False
        name = name or _default_name(src)
        if _record_path(name).exists():
            raise Invalid(
                f"a different file is already stored as {name!r}; pass --name to choose "
                f"another name, or remove {name!r} first"
            )
        from models.weights import inspect_weights

        try:
            info = inspect_weights(tmp, expected_kind=kind, trust=trust)
        except CheckpointError as e:
            raise Invalid(str(e).replace(str(tmp), str(src))) from e
        rec = WeightsRecord(
            name=name,
            kind=info.kind,
            file=f"{sha[:16]}-{name}.pt",
            sha256=sha,
            size=tmp.stat().st_size,
            details=info.details,
            note=info.note,
            source=str(src.resolve()),
            added_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        os.replace(tmp, rec.path)
        write_text_atomic(_record_path(name), json.dumps(asdict(rec), indent=2))
        return rec, True
    finally:
        tmp.unlink(missing_ok=True)


def weights_usage(record: WeightsRecord, *, session: Session) -> list[str]:
    """Where ``record`` is used, in words: settings that point at its file and model versions
    whose config or training snapshot name its path, file name or sha256."""
    used = []
    target = record.path.resolve()
    settings = get_settings()
    for key, value in settings.model_dump().items():
        if isinstance(value, Path):
            try:
                same = value.expanduser().resolve() == target
            except OSError:
                same = False
            if same:
                used.append(f"setting {key}")
        elif isinstance(value, str) and value and record.sha256 in value:
            used.append(f"setting {key}")
    marks = (record.file, record.sha256, str(target))
    for mv in session.exec(select(ModelVersion).order_by(ModelVersion.id)).all():
        text = json.dumps([mv.config, mv.train_snapshot], default=str)
        if any(m in text for m in marks):
            used.append(f"version {mv.name}")
    for project in session.exec(select(Project).order_by(Project.id)).all():
        if (project.assistance or {}).get("choice") == f"sam:{record.name}":
            used.append(f"the assistance of project {project.name}")
    return used


def remove_weights(name: str, *, session: Session) -> WeightsRecord:
    """Delete a stored file and its record. Raises WeightsInUse while anything uses it."""
    rec = get_weights(name)
    used = weights_usage(rec, session=session)
    if used:
        todo = []
        if any(u.startswith("setting ") for u in used):
            todo.append("change or unset those settings")
        if any(u.startswith("version ") for u in used):
            todo.append("delete those model versions")
        if any(u.startswith("the assistance ") for u in used):
            todo.append("choose another assistance on the dashboard")
        raise WeightsInUse(
            f"weights {name!r} are in use by {', '.join(used)}; {' and '.join(todo)} first"
        )
    _record_path(name).unlink(missing_ok=True)
    if not any(r.file == rec.file for r in list_weights()):
        rec.path.unlink(missing_ok=True)
    return rec


__all__ = [
    "WeightsInUse",
    "WeightsRecord",
    "add_weights",
    "get_weights",
    "list_weights",
    "remove_weights",
    "resolve_weights",
    "weights_dir",
    "weights_usage",
]
