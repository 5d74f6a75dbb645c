"""Fuzzy class search: ``core.fuzzy`` with the taxonomy's synonyms, and its JavaScript port
(``annotator/static/canvas/classes.js``, loaded alone into a blank Chromium page) giving the
same scores on a shared table of queries."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from browser_helpers import script_page
from conftest import REPO_ROOT

from core import fuzzy
from core.taxonomy import Taxonomy, TaxonomyError, default_taxonomy

CLASSES_JS = REPO_ROOT / "annotator" / "static" / "canvas" / "classes.js"

#: (what a user types, the class that must come first)
FIRST = [
    ("windscreen", "front_windshield"),  # a synonym
    ("fl door", "front_left_door"),  # an abbreviation
    ("rr door", "rear_right_door"),
    ("FR-Door", "front_right_door"),
    ("bonnet", "hood"),
    ("boot", "trunk"),
    ("headlamp", "left_headlight"),
    ("windsheild", "front_windshield"),  # swapped letters
    ("scrach", "scratch"),  # a letter missing
    ("frontleftdoor", "front_left_door"),  # no spaces
    ("front left door", "front_left_door"),
    ("fl wing", "front_left_fender"),
    ("number plate", "front_license_plate"),
    ("petrol cap", "fuel_door"),
    ("badge", "emblem"),
    ("scra", "scratch"),  # typing in progress
    ("cracked paint", "crackedpaint"),
    ("sill", "left_rocker_panel"),
    ("dent", "dent"),
]
#: (query, classes that must all match, classes that must not)
MATCHES = [
    ("mirror", {"left_mirror", "right_mirror"}, {"hood"}),
    ("door", {"front_left_door", "rear_right_door", "fuel_door"}, {"dent"}),
    ("fake", {"fakemud", "fakeshadow"}, {"front_bumper"}),
]


def names(query: str, limit: int | None = None) -> list[str]:
    return [c.name for c in default_taxonomy().search(query, limit)]


@pytest.mark.parametrize("query,expected", FIRST)
def test_best_match_first(query, expected):
    assert names(query)[0] == expected


@pytest.mark.parametrize("query,must,must_not", MATCHES)
def test_matches(query, must, must_not):
    found = set(names(query))
    assert must <= found and not (must_not & found)


def test_closer_texts_rank_above_longer_ones():
    ranked = names("fl door")
    assert ranked.index("front_left_door") < ranked.index("front_left_door_handle")
    assert names("xqzv") == []  # nonsense finds nothing rather than everything
    assert names("") == [c.name for c in default_taxonomy()]  # empty: all, in file order


def test_word_rules():
    assert fuzzy.word_score("door", "door") == 1.0
    assert fuzzy.word_score("do", "door") == 0.9
    assert fuzzy.word_score("shield", "windshield") == 0.7
    assert fuzzy.word_score("dor", "door") == 0.0  # 3 letters: no typo matching
    assert fuzzy.edit_distance("windsheild", "windshield") == 1  # a swap costs one
    assert fuzzy.edit_distance("kitten", "sitting") == 3
    assert fuzzy.readings("fl door") == [["fl", "door"], ["front", "left", "door"]]
    assert fuzzy.readings("hood") == [["hood"]]


def test_taxonomy_keeps_its_counts_and_checks_synonyms(tmp_path):
    tax = default_taxonomy()
    assert tax.counts() == {"damage": 26, "fake": 7, "part": 61}
    assert "windscreen" in tax.by_name("front_windshield").synonyms
    assert tax.by_name("front_windshield").as_dict()["synonyms"][0] == "windscreen"
    bad = tmp_path / "t.yaml"
    bad.write_text("classes:\n  - {id: 1, name: a, group: damage, synonyms: not-a-list}\n")
    with pytest.raises(TaxonomyError, match="synonyms"):
        Taxonomy.from_yaml(bad)


# -- the JavaScript port -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page() -> Iterator[object]:
    with script_page(CLASSES_JS, "PBFuzzy") as pg:
        yield pg


def test_classes_js_is_pure():
    text = re.sub(r"//[^\n]*", "", CLASSES_JS.read_text(encoding="utf-8"))
    for name in ("document", "window", "element", "fetch", "Storage", "app."):
        assert name not in text, f"classes.js refers to {name}: keep PBFuzzy pure"


@pytest.mark.browser
def test_js_port_gives_the_same_ranking_and_scores(page):
    tax = default_taxonomy()
    entries = [list(c.search_texts()) for c in tax]
    js_classes = [c.as_dict() for c in tax]
    queries = [q for q, _ in FIRST] + [q for q, _, _ in MATCHES] + ["", "xqzv", "l mirror"]
    js = page.evaluate(
        """([queries, classes]) => queries.map((q) =>
            PBFuzzy.rank(q, classes.map(PBFuzzy.classTexts)))""",
        [queries, js_classes],
    )
    for query, js_ranked in zip(queries, js, strict=True):
        py_ranked = fuzzy.rank(query, entries)
        assert [i for i, _ in js_ranked] == [i for i, _ in py_ranked], query
        assert [s for _, s in js_ranked] == pytest.approx([s for _, s in py_ranked], abs=1e-9)
    pairs = [("windsheild", "windshield"), ("kitten", "sitting"), ("", "abc"), ("ab", "ba")]
    for a, b in pairs:
        assert page.evaluate("([a, b]) => PBFuzzy.editDistance(a, b)", [a, b]) == (
            fuzzy.edit_distance(a, b)
        )
