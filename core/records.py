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
    """What a parse could not use, as sentences naming the entry and the reason.

    ``skipped`` and ``failed`` name entries (each counts as one instance skipped or failed);
    ``notes`` are lines about the file itself that count as neither (a category no
    annotation uses, for example).
    """

    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: ParseReport) -> None:
        self.skipped += other.skipped
        self.failed += other.failed
        self.notes += other.notes


#: How the command line takes a label map (``UnknownLabelsError``'s default advice).
MAP_FILE_HINT = "with --map MAPFILE, a JSON file"


class UnknownLabelsError(TaxonomyError):
    """Labels in a source file that neither the taxonomy nor the map file knows.

    ``map_hint`` says where the caller takes a label map ("with --map MAPFILE, a JSON file"
    on the command line); :meth:`advising` words the same error for another caller.
    """

    def __init__(
        self, labels: Iterable[str], source: str, taxonomy: Taxonomy, map_hint: str = MAP_FILE_HINT
    ):
        self.labels = sorted(set(labels))
        self.source = source
        self.taxonomy = taxonomy
        example = ", ".join(f'"{lab}": "<taxonomy name>"' for lab in self.labels[:3])
        super().__init__(
            f"{source}: {len(self.labels)} label(s) are not in the taxonomy: "
            f"{', '.join(repr(lab) for lab in self.labels)}. "
            f"Map them {map_hint} holding an object such as {{{example}}}, "
            f"using names from `panelbeater taxonomy` ({taxonomy.summary()})."
        )

    def advising(self, map_hint: str) -> UnknownLabelsError:
        """The same error, telling the user to map the labels ``map_hint``."""
        return UnknownLabelsError(self.labels, self.source, self.taxonomy, map_hint)


#: The attribute, and its value, of an instance imported from a side-less label (a "mirror"
#: mapped to ``left_mirror``): the side was chosen by the map, not seen; a lead settles it.
SIDE_ATTRIBUTE, SIDE_UNKNOWN = "side", "unknown"
#: Class ids at or above this are :class:`LabelResolver`'s stand-ins for a side-less label's
#: class (stand-in = this + class id), turned back by :meth:`LabelResolver.finish`.
SIDE_UNKNOWN_ID_BASE = 1_000_000_000

MapEntry = str | Mapping[str, str]


class LabelResolver:
    """Resolves a source file's label names to taxonomy classes through an optional map.

    Unknown labels are collected rather than raised one by one, so an import can list
    every unknown label at once (call :meth:`raise_if_unknown` after the parse).

    A map entry is a class name, or ``{"class": "<a sided class>", "side": "unknown"}`` for a
    source label without a side (many public datasets have one "mirror" or "door"): such
    instances get the sided class with the attribute ``side: unknown`` rather than a silent
    guess. Converters know only class ids, so the resolver hands them a stand-in id for these;
    :meth:`finish`, called on the parsed records, turns it into the class and the attribute.
    """

    def __init__(self, taxonomy: Taxonomy, label_map: Mapping[str, MapEntry] | None = None):
        self.taxonomy = taxonomy
        self.label_map: dict[str, str] = {}
        self.side_unknown: set[str] = set()
        for src, entry in (label_map or {}).items():
            dst = entry
            if isinstance(entry, Mapping):
                if entry.get("side") != SIDE_UNKNOWN or not isinstance(entry.get("class"), str):
                    raise TaxonomyError(
                        f"map file entry {src!r}: an object entry must be "
                        f'{{"class": "<taxonomy name>", "side": "unknown"}}'
                    )
                dst = entry["class"]
                self.side_unknown.add(src)
            if dst not in taxonomy:
                raise TaxonomyError(
                    f"map file entry {src!r} -> {dst!r}: {dst!r} is not a taxonomy class name"
                )
            if src in self.side_unknown and taxonomy.mirror_id(taxonomy.by_name(dst).id) == (
                taxonomy.by_name(dst).id
            ):
                raise TaxonomyError(
                    f"map file entry {src!r} -> {dst!r}: {dst!r} has no left/right twin, so "
                    "its side cannot be unknown; map it to the class name alone"
                )
            self.label_map[src] = dst
        self.unknown: set[str] = set()

    def resolve(self, label: str) -> LabelClass | None:
        name = self.label_map.get(label, label)
        cls = self.taxonomy.get(name)
        if cls is None:
            self.unknown.add(label)
        elif label in self.side_unknown:
            return LabelClass(
                SIDE_UNKNOWN_ID_BASE + cls.id, cls.name, cls.group, cls.display_name, cls.color
            )
        return cls

    def finish(self, records: Iterable[ImageRecord]) -> None:
        """Turn the stand-in ids of side-less labels into their class with ``side: unknown``."""
        if not self.side_unknown:
            return
        for record in records:
            inst = record.instances
            stand_in = inst.class_ids >= SIDE_UNKNOWN_ID_BASE
            if not stand_in.any():
                continue
            attrs = [dict(a or {}) for a in (inst.attributes or [{}] * len(inst.class_ids))]
            for k in stand_in.nonzero()[0].tolist():
                attrs[k][SIDE_ATTRIBUTE] = SIDE_UNKNOWN
            inst.class_ids = inst.class_ids - SIDE_UNKNOWN_ID_BASE * stand_in
            inst.attributes = attrs

    def raise_if_unknown(self, source: str) -> None:
        if self.unknown:
            raise UnknownLabelsError(self.unknown, source, self.taxonomy)


def load_label_map(path: str | Path | None) -> dict[str, MapEntry]:
    """Read a map file: a JSON object ``{"source label": "taxonomy name"}``; an entry may be
    ``{"class": "left_mirror", "side": "unknown"}`` for a label without a side."""
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
        isinstance(k, str) and (isinstance(v, str) or isinstance(v, dict)) for k, v in data.items()
    ):
        raise TaxonomyError(
            f"map file {path} must be a JSON object of class names, like "
            '{"back_bumper": "rear_bumper", "mirror": {"class": "left_mirror", "side": "unknown"}}'
        )
    return data
