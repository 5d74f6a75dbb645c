from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core.taxonomy import GROUPS, Taxonomy, TaxonomyError, default_taxonomy


def test_default_taxonomy_has_the_papers_counts():
    tax = default_taxonomy()
    assert tax.counts() == {"damage": 26, "fake": 7, "part": 61}
    assert len({c.id for c in tax}) == len(tax) == 94


@pytest.mark.parametrize(
    "name",
    [
        "dent",
        "scratch",
        "scrape",
        "crack",
        "crackedpaint",
        "brokenlight",
        "brokenglass",
        "fakemud",
        "fakestain",
        "fakeshape",
        "fakewaterdrip",
        "front_bumper",
        "rear_bumper",
        "hood",
        "roof",
        "trunk",
        "tailgate",
        "front_windshield",
        "rear_windshield",
        "front_left_door",
        "front_right_door",
        "rear_left_door",
        "rear_right_door",
        "front_left_fender",
        "front_right_fender",
        "rear_left_quarter_panel",
        "rear_right_quarter_panel",
        "left_headlight",
        "right_headlight",
        "left_taillight",
        "right_taillight",
        "left_mirror",
        "right_mirror",
        "wheel",
        "front_left_window",
    ],
)
def test_required_names_are_present(name):
    assert name in default_taxonomy()


def test_head_index_is_position_within_group():
    tax = default_taxonomy()
    for group in GROUPS:
        for i, cls in enumerate(tax.group(group)):
            assert tax.head_index(cls.id) == i
            assert tax.class_at(group, i) == cls


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "classes:\n  - {id: 1, name: a, group: damage}\n  - {id: 1, name: b, group: part}\n",
            "id 1 is used by both",
        ),
        (
            "classes:\n  - {id: 1, name: a, group: damage}\n  - {id: 2, name: a, group: part}\n",
            "name 'a' appears twice",
        ),
        ("classes:\n  - {id: 1, name: a, group: bodywork}\n", "group 'bodywork'"),
        ("classes: []\n", "non-empty 'classes'"),
        ("classes:\n  - {name: a, group: damage}\n", "needs id, name and group"),
        ("classes: [\n", "not valid YAML"),
    ],
)
def test_invalid_taxonomy_files_are_refused(tmp_path, body, message):
    path = tmp_path / "tax.yaml"
    path.write_text(body)
    with pytest.raises(TaxonomyError, match=message):
        Taxonomy.from_yaml(path)


def test_custom_taxonomy_reports_counts(tmp_path):
    path = tmp_path / "tax.yaml"
    path.write_text(
        "classes:\n  - {id: 5, name: dent, group: damage}\n  - {id: 9, name: hood, group: part}\n"
    )
    tax = Taxonomy.from_yaml(path)
    assert tax.counts() == {"damage": 1, "fake": 0, "part": 1}
    assert tax.summary() == "2 classes: 1 damage, 0 fake, 1 part"


def test_cli_prints_taxonomy_json():
    from cli.main import app

    result = CliRunner().invoke(app, ["taxonomy", "--json"])
    assert result.exit_code == 0, result.output
    classes = json.loads(result.output)
    assert len(classes) == 94
    assert {"id", "name", "group", "display_name", "color"} <= set(classes[0])


def test_mirror_swaps_sides_and_keeps_the_rest():
    from core.taxonomy import default_taxonomy

    tax = default_taxonomy()
    flip = lambda name: tax.by_id(tax.mirror_id(tax.by_name(name).id)).name  # noqa: E731
    assert flip("front_left_door") == "front_right_door"
    assert flip("rear_right_quarter_panel") == "rear_left_quarter_panel"
    assert flip("left_headlight") == "right_headlight"
    assert flip("hood") == "hood" and flip("dent") == "dent"
    for group in ("damage", "fake", "part"):
        m = tax.mirror_index(group)
        assert sorted(m.tolist()) == list(range(len(tax.group(group))))  # a permutation
        assert (m[m] == range(len(m))).all()  # mirroring twice changes nothing
    sided = [c.name for c in tax.group("part") if tax.mirror_id(c.id) != c.id]
    assert len(sided) >= 30 and all("left" in n or "right" in n for n in sided)
