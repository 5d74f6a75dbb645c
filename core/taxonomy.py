"""The label set: damage, fake-damage and part classes, loaded from a YAML file.

The default file (``core/taxonomy.yaml``) holds the ALBERT paper's 26 damage, 7 fake and
61 part classes. Class ids are stable across versions; model heads use the class's index
within its group (``Taxonomy.head_index``), which is the order of the file.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import yaml

from core import fuzzy

GROUPS: tuple[str, ...] = ("damage", "fake", "part")
DEFAULT_TAXONOMY_PATH = Path(__file__).with_name("taxonomy.yaml")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class TaxonomyError(ValueError):
    """A taxonomy file or a label that does not fit the taxonomy."""


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    group: str
    display_name: str
    color: str
    #: Other words people use for it ("windscreen", "bonnet"), for the class search.
    synonyms: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "group": self.group,
            "display_name": self.display_name,
            "color": self.color,
            "synonyms": list(self.synonyms),
        }

    def search_texts(self) -> tuple[str, ...]:
        return (self.name, self.display_name, *self.synonyms)


class Taxonomy:
    """An ordered, validated set of classes with lookups by id, name and group."""

    def __init__(self, classes: list[LabelClass], source: str = "<memory>"):
        self.source = source
        problems: list[str] = []
        seen_ids: dict[int, str] = {}
        seen_names: set[str] = set()
        for c in classes:
            if c.group not in GROUPS:
                problems.append(f"class {c.name!r} has group {c.group!r}; expected one of {GROUPS}")
            if c.id in seen_ids:
                problems.append(f"id {c.id} is used by both {seen_ids[c.id]!r} and {c.name!r}")
            if c.name in seen_names:
                problems.append(f"name {c.name!r} appears twice")
            if not _COLOR.match(c.color):
                problems.append(f"class {c.name!r} has colour {c.color!r}; expected #rrggbb")
            seen_ids[c.id] = c.name
            seen_names.add(c.name)
        if problems:
            raise TaxonomyError(f"taxonomy {source} is invalid: " + "; ".join(problems))
        self.classes: tuple[LabelClass, ...] = tuple(classes)
        self._by_id = {c.id: c for c in classes}
        self._by_name = {c.name: c for c in classes}
        self._by_group = {g: tuple(c for c in classes if c.group == g) for g in GROUPS}
        self._head_index = {c.id: i for g in GROUPS for i, c in enumerate(self._by_group[g])}

    # -- loading ---------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> Taxonomy:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise TaxonomyError(f"taxonomy file {path} does not exist") from e
        except yaml.YAMLError as e:
            raise TaxonomyError(f"taxonomy file {path} is not valid YAML: {e}") from e
        entries = raw.get("classes") if isinstance(raw, dict) else None
        if not isinstance(entries, list) or not entries:
            raise TaxonomyError(f"taxonomy file {path} needs a non-empty 'classes' list")
        classes = []
        for i, entry in enumerate(entries):
            try:
                classes.append(
                    LabelClass(
                        id=int(entry["id"]),
                        name=str(entry["name"]),
                        group=str(entry["group"]),
                        display_name=str(entry.get("display_name") or entry["name"]),
                        color=str(entry.get("color") or "#888888"),
                        synonyms=_synonyms(entry.get("synonyms"), path, i),
                    )
                )
            except (KeyError, TypeError, ValueError) as e:
                raise TaxonomyError(
                    f"taxonomy file {path}, class #{i + 1}: needs id, name and group ({e})"
                ) from e
        return cls(classes, source=str(path))

    # -- lookups ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    def __contains__(self, name_or_id: object) -> bool:
        return name_or_id in self._by_name or name_or_id in self._by_id

    def by_id(self, class_id: int) -> LabelClass:
        try:
            return self._by_id[int(class_id)]
        except KeyError as e:
            raise TaxonomyError(f"class id {class_id} is not in taxonomy {self.source}") from e

    def by_name(self, name: str) -> LabelClass:
        try:
            return self._by_name[name]
        except KeyError as e:
            raise TaxonomyError(f"label {name!r} is not in taxonomy {self.source}") from e

    def get(self, name: str) -> LabelClass | None:
        return self._by_name.get(name)

    def group(self, group: str) -> tuple[LabelClass, ...]:
        if group not in GROUPS:
            raise TaxonomyError(f"unknown group {group!r}; expected one of {GROUPS}")
        return self._by_group[group]

    def head_index(self, class_id: int) -> int:
        """Index of a class within its group: the column of its head's probability vector."""
        return self._head_index[int(class_id)]

    def class_at(self, group: str, index: int) -> LabelClass:
        return self._by_group[group][index]

    def mirror_id(self, class_id: int) -> int:
        """The class a horizontally flipped photo shows instead: ``front_left_door`` <->
        ``front_right_door``; classes without a side (or whose other side is missing from this
        taxonomy) map to themselves."""
        name = self.by_id(class_id).name
        swap = {"left": "right", "right": "left"}
        words = name.split("_")
        mirrored = "_".join(swap.get(w, w) for w in words)
        other = self._by_name.get(mirrored)
        return other.id if other is not None else int(class_id)

    def mirror_index(self, group: str) -> np.ndarray:
        """``(C,)`` int64: head index -> head index of the mirrored class, within ``group``."""
        return np.asarray(
            [self.head_index(self.mirror_id(c.id)) for c in self.group(group)], dtype=np.int64
        )

    def search(self, query: str, limit: int | None = None) -> list[LabelClass]:
        """Classes matching ``query`` by name, display name or synonym, best first
        (:func:`core.fuzzy.rank`); every class, in file order, for an empty query."""
        ranked = fuzzy.rank(query, [c.search_texts() for c in self.classes])
        hits = [self.classes[i] for i, _ in ranked]
        return hits if limit is None else hits[:limit]

    def counts(self) -> dict[str, int]:
        return {g: len(self._by_group[g]) for g in GROUPS}

    def summary(self) -> str:
        c = self.counts()
        return f"{len(self)} classes: " + ", ".join(f"{c[g]} {g}" for g in GROUPS)

    def as_list(self) -> list[dict]:
        return [c.as_dict() for c in self.classes]


def _synonyms(raw: object, path: Path, index: int) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, str) and s.strip() for s in raw):
        raise TaxonomyError(
            f"taxonomy file {path}, class #{index + 1}: 'synonyms' must be a list of words"
        )
    return tuple(s.strip() for s in raw)


_default_lock = threading.Lock()


@cache
def _default_taxonomy() -> Taxonomy:
    return Taxonomy.from_yaml(DEFAULT_TAXONOMY_PATH)


def default_taxonomy() -> Taxonomy:
    # A server's first requests arrive together: one thread reads the file while the others
    # wait, instead of each parsing it (a third of a second each, holding the GIL).
    with _default_lock:
        return _default_taxonomy()


def load_taxonomy(path: str | Path | None) -> Taxonomy:
    """The taxonomy at ``path``, or the default one when ``path`` is None."""
    return default_taxonomy() if path is None else Taxonomy.from_yaml(path)
