"""On one photo a damage class and a part class never look alike: the canvas resolves clashes
between groups per photo (``static/canvas/palette.js`` ``photoColors``), in headless Chromium."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from browser_helpers import launch, require_chromium
from conftest import REPO_ROOT

pytestmark = pytest.mark.browser
sync_api = require_chromium()

PALETTE_JS = REPO_ROOT / "annotator" / "static" / "canvas" / "palette.js"
#: OKLab distance that reads as plainly another colour (tests/test_browser_zoom.py).
APART = 0.08


def oklab(hex_: str) -> np.ndarray:
    rgb = np.array([int(hex_[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m1 = np.array(
        [
            [0.4122214708, 0.5363325363, 0.0514459929],
            [0.2119034982, 0.6806995451, 0.1073969566],
            [0.0883024619, 0.2817188376, 0.6299787005],
        ]
    )
    m2 = np.array(
        [
            [0.2104542553, 0.793617785, -0.0040720468],
            [1.9779984951, -2.428592205, 0.4505937099],
            [0.0259040371, 0.7827717662, -0.808675766],
        ]
    )
    return m2 @ np.cbrt(m1 @ lin)


def dist(a: str, b: str) -> float:
    return float(np.linalg.norm(oklab(a) - oklab(b)))


def test_damage_and_part_classes_on_one_photo_never_look_alike() -> None:
    from core.taxonomy import default_taxonomy

    classes = [c.as_dict() for c in default_taxonomy().classes]
    with launch(sync_api) as browser:
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        page.add_script_tag(content=PALETTE_JS.read_text() + "\nwindow.PBPalette = PBPalette;")
        base = {
            int(k): v for k, v in page.evaluate("(c) => PBPalette.classColors(c)", classes).items()
        }
        group = {c["id"]: c["group"] for c in classes}
        # The groups are coloured on their own: some damage and part classes look alike.
        clashes = [
            (d, p)
            for d, p in itertools.product(
                [i for i in base if group[i] == "damage"], [i for i in base if group[i] == "part"]
            )
            if dist(base[d], base[p]) < APART
        ]
        assert clashes
        for d, p in clashes:
            present = [{"id": d, "group": "damage"}, {"id": p, "group": "part"}]
            got = page.evaluate("([p, c]) => PBPalette.photoColors(p, c)", [present, base])
            assert got[str(d)] == base[d]  # damage keeps its colour
            assert dist(got[str(d)], got[str(p)]) >= APART, (d, p)
        # A photo with many classes of every group: no two groups' classes look alike, and the
        # classes of one group keep the colours the class list shows.
        present = [{"id": c["id"], "group": c["group"]} for c in classes if c["id"] % 4 == 0]
        got = {
            int(k): v
            for k, v in page.evaluate(
                "([p, c]) => PBPalette.photoColors(p, c)", [present, base]
            ).items()
        }
        for a, b in itertools.combinations(got, 2):
            if group[a] != group[b]:
                assert dist(got[a], got[b]) >= APART, (a, b)
        assert all(got[i] == base[i] for i in got if group[i] == "damage")
        page.close()
