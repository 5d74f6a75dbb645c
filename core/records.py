"""Plain records that format converters read and write, independent of the database.

A converter turns a file's parsed content into ``list[ImageRecord]`` (import) or a list
of records into the format's content (export). Labels inside records are already taxonomy
class ids; the mapping from a file's own label names happens in :class:`LabelResolver`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.instances import Instances
from core.taxonomy import LabelClass, Taxonomy, TaxonomyError

SPLITS = ("train", "val", "test")


@dataclass
class ImageRecord:
    """One image with its labelled instances.

    ``file_name`` is the path as the source names it (relative to the images folder);
    ``width``/``height`` are in pixels after EXIF orientation; ``split`` is one of
    ``SPLITS`` or None; ``meta`` keeps anything the source had that we do not interpret.
    """

    file_name: str
    width: int
    height: int
    instances: Instances = field(default_factory=Instances.empty)
    split: str | None = None
    sha256: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParseReport:
    """What a parse could not use, as sentences naming the entry and the reason."""

    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def extend(self, other: ParseReport) -> None:
        self.skipped += other.skipped
        self.failed += other.failed


class UnknownLabelsError(TaxonomyError):
    """Labels in a source file that neither the taxonomy nor the map file knows."""

    def __init__(self, labels: Iterable[str], source: str, taxonomy: Taxonomy):
        self.labels = sorted(set(labels))
        example = ", ".join(f'"{lab}": "<taxonomy name>"' for lab in self.labels[:3])
        super().__init__(
            f"{source}: {len(self.labels)} label(s) are not in the taxonomy: "
            f"{', '.join(repr(lab) for lab in self.labels)}. "
            f"Map them with --map MAPFILE, a JSON object such as {{{example}}}, "
            f"using names from `panelbeater taxonomy` ({taxonomy.summary()})."
        )


class LabelResolver:
    """Resolves a source file's label names to taxonomy classes through an optional map.

    Unknown labels are collected rather than raised one by one, so an import can list
    every unknown label at once (call :meth:`raise_if_unknown` after the parse).
    """

    def __init__(self, taxonomy: Taxonomy, label_map: Mapping[str, str] | None = None):
        self.taxonomy = taxonomy
        self.label_map = dict(label_map or {})
        for src, dst in self.label_map.items():
            if dst not in taxonomy:
                raise TaxonomyError(
                    f"map file entry {src!r} -> {dst!r}: {dst!r} is not a taxonomy class name"
                )
        self.unknown: set[str] = set()

    def resolve(self, label: str) -> LabelClass | None:
        name = self.label_map.get(label, label)
        cls = self.taxonomy.get(name)
        if cls is None:
            self.unknown.add(label)
        return cls

    def raise_if_unknown(self, source: str) -> None:
        if self.unknown:
            raise UnknownLabelsError(self.unknown, source, self.taxonomy)


def load_label_map(path: str | Path | None) -> dict[str, str]:
    """Read a map file: a JSON object ``{"source label": "taxonomy name"}``."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise TaxonomyError(f"map file {path} does not exist") from e
    except json.JSONDecodeError as e:
        raise TaxonomyError(f"map file {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise TaxonomyError(
            f'map file {path} must be a JSON object of strings, like {{"back_bumper": "rear_bumper"}}'
        )
    return data
