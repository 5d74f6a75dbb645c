"""Deterministic, leak-free train/val/test splits from image content hashes.

The split is a function of the sha256 alone, so byte-identical images (the same photo
under two names, or imported twice) always land in the same split, and the assignment
never changes when images are added or removed.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.records import SPLITS

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def split_for(sha256: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a hex sha256, in the given proportions."""
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"split fractions must be 3 non-negative numbers, got {list(fractions)}")
    try:
        # 52 bits of the hash as a uniform number in [0, 1)
        u = int(sha256[:13], 16) / float(1 << 52)
    except (TypeError, ValueError) as e:
        raise ValueError(f"split_for needs a hex sha256, got {sha256!r}") from e
    total = float(sum(fractions))
    edge = 0.0
    for name, f in zip(SPLITS, fractions, strict=True):
        edge += f / total
        if u < edge:
            return name
    return SPLITS[-1]


def assign_splits(
    records, fractions: Sequence[float] = DEFAULT_FRACTIONS, *, overwrite: bool = False
):
    """Set ``record.split`` from ``record.sha256`` where it is missing (or always, with overwrite)."""
    for r in records:
        if r.sha256 is None:
            raise ValueError(f"{r.file_name}: a split from the content needs its sha256")
        if overwrite or r.split is None:
            r.split = split_for(r.sha256, fractions)
    return records
