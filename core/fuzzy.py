"""Fuzzy matching of what a user types against class names, display names and synonyms.

Pure Python with no dependencies, so that ``annotator/static/canvas/classes.js`` can carry a
line-for-line port (``PBFuzzy``); ``tests/test_fuzzy.py`` checks both give the same scores on a
shared table of queries. Change one only together with the other.

The rules, in order of strength, for one query word against one word of a class text:

* equal: 1.0; the word starts with the query word (typing in progress): 0.9;
* the query word (3+ letters) sits inside the word: 0.7;
* a typo: for query words of 4+ letters, ``0.8 * similarity`` where similarity is
  ``1 - edit distance / longer length`` (optimal string alignment, so a swapped pair of
  letters counts once) and at least :data:`MIN_SIMILARITY`.

Every query word must match some word of the text, else the text does not match. The score
is the mean over the query words, less :data:`EXTRA_WORD_PENALTY` per word of the text the
query did not need, so ``door`` ranks "Front left door" above "Front left door handle".
A query typed without spaces ("frontleftdoor") matches the text's words joined.
Abbreviations common on claim forms (``fl`` = front left, ``rr`` = rear right, ...) are tried
expanded and as typed; the better reading wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: Short forms expanded before matching; the literal word is tried too.
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "fl": ("front", "left"),
    "fr": ("front", "right"),
    "rl": ("rear", "left"),
    "rr": ("rear", "right"),
    "lf": ("left", "front"),
    "rf": ("right", "front"),
    "lr": ("left", "rear"),
    "lh": ("left",),
    "rh": ("right",),
    "l": ("left",),
    "r": ("right",),
}
MIN_SIMILARITY = 0.75
EXTRA_WORD_PENALTY = 0.02
_SPLIT = re.compile(r"[^a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words: ``"front_left-door"`` -> ``["front", "left", "door"]``."""
    return [w for w in _SPLIT.split(text.lower()) if w]


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of
    two neighbouring letters each cost 1."""
    rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        rows[i][0] = i
    for j in range(len(b) + 1):
        rows[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            best = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                best = min(best, rows[i - 2][j - 2] + 1)
            rows[i][j] = best
    return rows[len(a)][len(b)]


def word_score(q: str, w: str) -> float:
    """How well query word ``q`` matches word ``w`` (0 = not at all)."""
    if q == w:
        return 1.0
    if w.startswith(q):
        return 0.9
    if len(q) >= 3 and q in w:
        return 0.7
    if len(q) >= 4:
        similarity = 1 - edit_distance(q, w) / max(len(q), len(w))
        if similarity >= MIN_SIMILARITY:
            return 0.8 * similarity
    return 0.0


def _reading_score(query: Sequence[str], text: Sequence[str]) -> float:
    total = 0.0
    for q in query:
        best = max((word_score(q, w) for w in text), default=0.0)
        if best == 0.0:
            return 0.0
        total += best
    return total / len(query) - EXTRA_WORD_PENALTY * max(0, len(text) - len(query))


def readings(query: str) -> list[list[str]]:
    """The query's words as typed, and with every abbreviation expanded (when it has one)."""
    typed = words(query)
    expanded: list[str] = []
    for q in typed:
        expanded.extend(ABBREVIATIONS.get(q, (q,)))
    return [typed] if expanded == typed else [typed, expanded]


def text_score(query: str, text: str) -> float:
    """The best score of any reading of ``query`` against ``text``; 0 when none matches."""
    text_words = words(text)
    if not text_words:
        return 0.0
    best = 0.0
    for reading in readings(query):
        if not reading:
            continue
        best = max(best, _reading_score(reading, text_words))
        joined, text_joined = "".join(reading), "".join(text_words)
        if joined == text_joined:
            best = max(best, 1.0)
        elif len(joined) >= 4 and joined in text_joined:
            best = max(best, 0.6)
    return round(best, 6)


def best_score(query: str, texts: Iterable[str]) -> float:
    return max((text_score(query, t) for t in texts), default=0.0)


def rank(query: str, entries: Sequence[Sequence[str]]) -> list[tuple[int, float]]:
    """``(index, score)`` of the entries (each a list of texts: name, display name, synonyms)
    that match ``query``, best first; ties keep the entries' order. An empty query matches
    every entry with score 0, in order."""
    if not words(query):
        return [(i, 0.0) for i in range(len(entries))]
    scored = [(i, best_score(query, texts)) for i, texts in enumerate(entries)]
    hits = [(i, s) for i, s in scored if s > 0]
    hits.sort(key=lambda item: (-item[1], item[0]))
    return hits
