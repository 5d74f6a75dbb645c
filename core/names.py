"""User names as people read them: folded for lookup, reduced to a skeleton for look-alikes.

Pure Python (``unicodedata`` only). ``fold_username`` is what a name is stored and looked up
as (NFKC, case-folded), so ``Ana``, ``ANA`` and a full-width ``Ａｎａ`` are one name.
``username_skeleton`` goes further, for refusing a new name that would pass for an existing
one on screen: look-alike Cyrillic, Greek and Armenian letters read as their Latin twins, and
invisible format characters (zero-width space, joiners, direction marks) are dropped.
"""

from __future__ import annotations

import unicodedata

#: Letters that, once case-folded, look like a Latin letter in common fonts: a small part of
#: Unicode's confusables table (UTS #39), the part an impersonator reaches for first.
LOOK_ALIKES: dict[str, str] = {
    # Cyrillic
    "а": "a",
    "с": "c",
    "ԁ": "d",
    "е": "e",
    "һ": "h",
    "і": "i",
    "ј": "j",
    "ӏ": "l",
    "о": "o",
    "р": "p",
    "ԛ": "q",
    "ѕ": "s",
    "у": "y",
    "ү": "y",
    "х": "x",
    "ԝ": "w",
    "ѵ": "v",
    # Greek
    "α": "a",
    "ϲ": "c",
    "η": "n",
    "ι": "i",
    "ϳ": "j",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "υ": "u",
    "χ": "x",
    "γ": "y",
    # Armenian
    "օ": "o",
    "ս": "u",
    "հ": "h",
    # Latin letters without their dot or with an open bowl
    "ı": "i",
    "ȷ": "j",
    "ɑ": "a",
    "ɡ": "g",
}
_TO_LATIN = str.maketrans(LOOK_ALIKES)


def fold_username(name: str) -> str:
    """``name`` as it is stored and looked up: NFKC, case-folded, without outer whitespace.

    NFKC runs again after the fold because folding can undo it (``ß`` folds to ``ss``, but
    some folds produce sequences NFKC would compose); the result folds to itself.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return folded.strip()


def is_invisible(char: str) -> bool:
    """Format (Cf: zero-width space, joiners, direction marks) and control (Cc) characters."""
    return unicodedata.category(char) in ("Cf", "Cc")


def username_skeleton(name: str) -> str:
    """What ``name`` looks like: folded, invisible characters dropped, look-alike letters
    read as Latin. Two names with one skeleton pass for each other on screen."""
    visible = "".join(c for c in fold_username(name) if not is_invisible(c))
    return visible.translate(_TO_LATIN)
