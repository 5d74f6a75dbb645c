"""Image file names that stay inside any folder they are joined to.

A name comes from whoever sent the photo or the label file: a browser on Windows sends
``C:\\Users\\me\\car.jpg``, a label file may say ``..\\..\\car.jpg``. Imports store, and
exports write, only what :func:`safe_file_name` leaves, so no export carries a name that a
tool unpacking it could follow out of its folder.
"""

from __future__ import annotations

from pathlib import PurePath

from core.records import ImageRecord

#: Segments that lead nowhere or upwards.
_DROPPED = ("", ".", "..")


def safe_file_name(name: str) -> str:
    """``name`` as a relative POSIX path with no way out: a backslash reads as a separator,
    and empty, ``.`` and ``..`` segments, a leading drive (``C:``) and control characters
    are dropped. '' when nothing is left."""
    clean = "".join(ch for ch in name if ch >= " ")
    parts = [p.strip() for p in clean.replace("\\", "/").split("/")]
    parts = [p for p in parts if p not in _DROPPED]
    if parts and parts[0].endswith(":"):
        parts = parts[1:]
    return "/".join(parts)


def safe_base_name(name: str) -> str:
    """The last segment of :func:`safe_file_name` (what an upload is called); '' when none."""
    return safe_file_name(name).rsplit("/", 1)[-1]


def record_file_name(record: ImageRecord) -> str:
    """The name an export gives ``record``'s photo: its safe file name, else the base name of
    its stored file (``meta["path"]``), else ``image``."""
    stored = PurePath(str(record.meta.get("path") or "")).name
    return safe_file_name(record.file_name) or safe_base_name(stored) or "image"
