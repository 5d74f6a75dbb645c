"""The canvas's pure geometry (``annotator/static/canvas/geometry.js``) run in headless Chromium.

Each JS function is checked against ``core.geometry`` on the same tiny shapes where core has the
function (areas, bounding box, translation, and hit tests against rasterisation), and against a
brute-force Python reference where only the canvas has it (nearest edge, part suggestion). The
geometry file is loaded alone into a blank page, which also proves it needs no DOM or widget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np
import pytest
from browser_helpers import script_page
from conftest import REPO_ROOT

from core.geometry import Shape, ring_area, ring_to_mask, shape_to_mask

pytestmark = pytest.mark.browser

CANVAS_DIR = REPO_ROOT / "annotator" / "static" / "canvas"
GEOMETRY_JS = CANVAS_DIR / "geometry.js"

# -- shared tiny shapes, in the API's JSON form --------------------------------------------------
SQUARE = [{"exterior": [[1, 1], [5, 1], [5, 5], [1, 5]], "holes": []}]
SQUARE_CW = [{"exterior": [[1, 1], [1, 5], [5, 5], [5, 1]], "holes": []}]  # other orientation
L_SHAPE = [{"exterior": [[0, 0], [6, 0], [6, 2], [2, 2], [2, 6], [0, 6]], "holes": []}]  # concave
SQUARE_WITH_HOLE = [
    {"exterior": [[1, 1], [7, 1], [7, 7], [1, 7]], "holes": [[[3, 3], [5, 3], [5, 5], [3, 5]]]}
]
TWO_HOLES = [
    {
        "exterior": [[0, 0], [8, 0], [8, 6], [0, 6]],
        "holes": [[[1, 1], [3, 1], [3, 4], [1, 4]], [[5, 2], [7, 2], [6, 5]]],
    }
]
TWO_PARTS = [
    {"exterior": [[0, 0], [2, 0], [2, 2], [0, 2]], "holes": []},
    {"exterior": [[4, 4], [8, 4], [8, 8], [4, 8]], "holes": []},
]
OVERLAPPING_PARTS = [  # parts unite: the overlap is inside once, not cancelled
    {"exterior": [[0, 0], [5, 0], [5, 5], [0, 5]], "holes": []},
    {"exterior": [[3, 3], [8, 3], [8, 8], [3, 8]], "holes": []},
]
OFF_GRID_TRIANGLE = [{"exterior": [[0.5, 0.25], [7.3, 1.1], [3.2, 6.9]], "holes": []}]
COLLINEAR = [{"exterior": [[0, 0], [2, 2], [4, 4]], "holes": []}]  # zero area
REPEATED_VERTEX = [
    {"exterior": [[0, 0], [0, 0], [4, 0], [4, 4]], "holes": []}
]  # a zero-length edge
HOLE_LARGER_THAN_EXTERIOR = [  # area never negative
    {"exterior": [[2, 2], [4, 2], [4, 4], [2, 4]], "holes": [[[0, 0], [6, 0], [6, 6], [0, 6]]]}
]

SHAPES = {
    "square": SQUARE,
    "square_cw": SQUARE_CW,
    "l_shape": L_SHAPE,
    "square_with_hole": SQUARE_WITH_HOLE,
    "two_holes": TWO_HOLES,
    "two_parts": TWO_PARTS,
    "overlapping_parts": OVERLAPPING_PARTS,
    "off_grid_triangle": OFF_GRID_TRIANGLE,
    "collinear": COLLINEAR,
    "repeated_vertex": REPEATED_VERTEX,
    "hole_larger_than_exterior": HOLE_LARGER_THAN_EXTERIOR,
}
shapes = pytest.mark.parametrize("geometry", list(SHAPES.values()), ids=list(SHAPES))

# Pixel centres closer than this to an edge are left out of the hit-test comparison: there
# pycocotools' rule (vertices snapped to a 1/5-pixel grid) decides, not exact geometry.
EDGE_MARGIN = 0.25


def rings_of(geometry: list[dict]) -> list[list[list[float]]]:
    return [r for p in geometry for r in [p["exterior"], *p.get("holes", [])]]


# -- the page --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page() -> Iterator[object]:
    with script_page(GEOMETRY_JS, "PBGeometry") as pg:
        yield pg


def call(page, name: str, *args):
    """``PBGeometry.name(*args)`` in the page; arguments and result travel as JSON."""
    return page.evaluate(f"(args) => PBGeometry.{name}(...args)", list(args))


# -- purity ----------------------------------------------------------------------------------------
def test_geometry_module_touches_no_dom_state_or_server():
    text = re.sub(r"//[^\n]*", "", GEOMETRY_JS.read_text(encoding="utf-8"))
    for name in ("document", "window", "element", "props", "server", "fetch", "Storage", "app."):
        assert name not in text, f"geometry.js refers to {name}: keep it pure and standalone"


# -- against core.geometry -------------------------------------------------------------------------
@shapes
def test_ring_area_matches_core(page, geometry):
    for ring in rings_of(geometry):
        for oriented in (ring, ring[::-1]):
            expected = ring_area(np.asarray(oriented, dtype=np.float64))
            assert call(page, "ringArea", oriented) == pytest.approx(expected, abs=1e-9)


@shapes
def test_shape_area_and_bbox_match_core(page, geometry):
    shape = Shape.from_json(geometry)
    assert call(page, "shapeArea", geometry) == pytest.approx(shape.area, abs=1e-9)
    for js_poly, poly in zip(geometry, shape.polygons, strict=True):
        assert call(page, "polygonArea", js_poly) == pytest.approx(poly.area, abs=1e-9)
    assert call(page, "bbox", geometry) == pytest.approx(shape.bbox.tolist())


@shapes
def test_translated_matches_core(page, geometry):
    moved = call(page, "translated", geometry, 2.5, -1.25)
    expected = Shape.from_json(geometry).translated(2.5, -1.25)
    assert Shape.from_json(moved).almost_equal(expected, atol=1e-9)


def _pixel_centres_off_edges(geometry: list[dict], height: int, width: int):
    """(row, col, [x, y]) of each pixel centre at least EDGE_MARGIN from every edge."""
    out = []
    for row in range(height):
        for col in range(width):
            pt = (col + 0.5, row + 0.5)
            if min(_segment_distance(pt, a, b) for a, b in _edges(geometry)) >= EDGE_MARGIN:
                out.append((row, col, list(pt)))
    return out


@shapes
def test_hit_test_with_holes_matches_rasterisation(page, geometry):
    """inShape at each pixel centre is the pixel of core's shape_to_mask (holes even-odd, parts
    united), away from the edges where the rasteriser's grid snapping decides."""
    h, w = 10, 10
    mask = shape_to_mask(Shape.from_json(geometry), h, w)
    centres = _pixel_centres_off_edges(geometry, h, w)
    assert len(centres) > h * w // 2
    hits = page.evaluate(
        "([g, pts]) => pts.map((p) => PBGeometry.inShape(p, g))",
        [geometry, [c[2] for c in centres]],
    )
    wrong = [(c[0], c[1]) for c, hit in zip(centres, hits, strict=True) if hit != mask[c[0], c[1]]]
    assert wrong == []


@shapes
def test_point_in_ring_matches_rasterisation(page, geometry):
    h, w = 10, 10
    centres = _pixel_centres_off_edges(geometry, h, w)
    for ring in rings_of(geometry):
        mask = ring_to_mask(np.asarray(ring, dtype=np.float64), h, w)
        hits = page.evaluate(
            "([r, pts]) => pts.map((p) => PBGeometry.inRing(p, r))", [ring, [c[2] for c in centres]]
        )
        assert [bool(mask[r, c]) for r, c, _ in centres] == hits


# -- against brute force (the canvas alone has these) ----------------------------------------------
def _edges(geometry: list[dict]):
    for ring in rings_of(geometry):
        for i in range(len(ring)):
            yield ring[i], ring[(i + 1) % len(ring)]


def _segment_distance(pt, a, b, samples: int = 0) -> float:
    """Exact distance from pt to segment ab (or, with samples, the least over that many points
    spread along it: an independent check of the exact formula)."""
    ax, ay, bx, by = float(a[0]), float(a[1]), float(b[0]), float(b[1])
    if samples:
        return min(
            math.dist(pt, (ax + (bx - ax) * k / samples, ay + (by - ay) * k / samples))
            for k in range(samples + 1)
        )
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = (
        0.0
        if length2 == 0
        else max(0.0, min(1.0, ((pt[0] - ax) * dx + (pt[1] - ay) * dy) / length2))
    )
    return math.dist(pt, (ax + t * dx, ay + t * dy))


def _nearest_edges(geometry: list[dict], pt) -> tuple[float, list[tuple[int, int, int]]]:
    """The least distance from pt to any edge, and every (pi, ri, insert index) that reaches it,
    in the canvas's numbering: ri 0 is the exterior, ri k hole k - 1; the new vertex goes at i."""
    found = []
    for pi, poly in enumerate(geometry):
        for ri, ring in enumerate([poly["exterior"], *poly.get("holes", [])]):
            for i in range(len(ring)):
                d = _segment_distance(pt, ring[i], ring[(i + 1) % len(ring)])
                found.append((d, (pi, ri, i + 1)))
    best = min(d for d, _ in found)
    return best, [key for d, key in found if d <= best + 1e-9]


QUERY_POINTS = [
    [0, 0], [3, 3], [4, 4], [2.2, 5.9], [6.1, 1.7], [9, 9], [-3, 2.5], [4.01, 2.99], [1.5, 0.25],
]  # fmt: skip


@shapes
def test_nearest_edge_matches_brute_force(page, geometry):
    for pt in QUERY_POINTS:
        ne = call(page, "nearestEdge", geometry, pt)
        best, keys = _nearest_edges(geometry, pt)
        assert ne["d"] == pytest.approx(best, abs=1e-9), pt
        assert (ne["pi"], ne["ri"], ne["i"]) in keys, pt
        # q is the click projected onto that edge, rounded to 0.01 px like pointer positions.
        poly = geometry[ne["pi"]]
        ring = [poly["exterior"], *poly["holes"]][ne["ri"]]
        a, b = ring[ne["i"] - 1], ring[ne["i"] % len(ring)]
        assert _segment_distance(ne["q"], a, b) <= 0.005 * math.sqrt(2) + 1e-9, pt
        assert math.dist(ne["q"], pt) == pytest.approx(best, abs=0.01), pt


def test_nearest_edge_of_nothing_is_null(page):
    assert call(page, "nearestEdge", [], [1, 1]) is None


@pytest.mark.parametrize(
    "pt, a, b",
    [
        ([0, 5], [0, 0], [10, 0]),  # projects inside
        ([-4, 3], [0, 0], [10, 0]),  # beyond the start
        ([13, -4], [0, 0], [10, 0]),  # beyond the end
        ([2, 2], [1, 1], [1, 1]),  # zero-length segment
        ([3.3, 0.7], [0.5, 0.25], [7.3, 1.1]),  # oblique, off grid
        ([1, 1], [0, 0], [2, 2]),  # on the segment
    ],
)
def test_closest_on_segment_matches_sampling(page, pt, a, b):
    c = call(page, "closestOnSegment", pt, a, b)
    assert c["d"] == pytest.approx(_segment_distance(pt, a, b), abs=1e-12)
    assert c["d"] == pytest.approx(_segment_distance(pt, a, b, samples=20000), abs=1e-3)
    assert math.dist(pt, (c["x"], c["y"])) == pytest.approx(c["d"], abs=1e-12)
    assert _segment_distance((c["x"], c["y"]), a, b) <= 1e-9


def _part_suggestion(geometry: list[dict], candidates: list[dict]) -> dict | None:
    """The share of the damage's box that each candidate part's box covers; the best, first on a
    tie, or None when nothing overlaps."""
    x0, y0, x1, y1 = Shape.from_json(geometry).bbox.tolist()
    area = max((x1 - x0) * (y1 - y0), 1e-6)
    best = None
    for c in candidates:
        u0, v0, u1, v1 = Shape.from_json(c["geometry"]).bbox.tolist()
        ov = max(0.0, min(x1, u1) - max(x0, u0)) * max(0.0, min(y1, v1) - max(y0, v0)) / area
        if ov > 0 and (best is None or ov > best["ov"]):
            best = {"id": c["class_id"], "ov": ov}
    return best


def _part(class_id: int, geometry: list[dict]) -> dict:
    return {"class_id": class_id, "geometry": geometry}


DAMAGE = [{"exterior": [[2, 2], [6, 2], [6, 4], [2, 4]], "holes": []}]  # box 2..6 x 2..4


@pytest.mark.parametrize(
    "damage, candidates, expected_id",
    [
        (DAMAGE, [], None),
        (DAMAGE, [_part(7, TWO_PARTS)], 7),  # boxes of all parts: 0..8, covers it
        (DAMAGE, [_part(7, [{"exterior": [[10, 10], [12, 10], [12, 12]], "holes": []}])], None),
        (DAMAGE, [_part(7, [{"exterior": [[6, 2], [9, 2], [9, 4]], "holes": []}])], None),  # touch
        (DAMAGE, [_part(7, SQUARE), _part(8, L_SHAPE)], 8),  # larger share wins
        (DAMAGE, [_part(7, L_SHAPE), _part(8, L_SHAPE)], 7),  # first wins a tie
        (DAMAGE, [_part(7, SQUARE_WITH_HOLE), _part(8, OFF_GRID_TRIANGLE)], 7),
        (COLLINEAR, [_part(7, SQUARE)], 7),  # a diagonal line still has a box
        ([{"exterior": [[0, 1], [4, 1], [2, 1]], "holes": []}], [_part(7, SQUARE)], None),  # flat
        (OFF_GRID_TRIANGLE, [_part(7, SQUARE), _part(8, TWO_HOLES)], 8),
    ],
)
def test_part_suggestion_matches_brute_force(page, damage, candidates, expected_id):
    got = call(page, "partSuggestion", damage, candidates)
    ref = _part_suggestion(damage, candidates)
    if ref is None:
        assert got is None and expected_id is None
        return
    assert got["id"] == ref["id"] == expected_id
    assert got["ov"] == pytest.approx(ref["ov"], abs=1e-12)
    assert 0 < got["ov"] <= 1


@pytest.mark.parametrize("box", [[1, 2, 5, 7], [5, 7, 1, 2], [5, 2, 1, 7], [3, 3, 3, 3]])
def test_normal_box_orders_corners(page, box):
    x0, x1 = sorted(box[0::2])
    y0, y1 = sorted(box[1::2])
    assert call(page, "normalBox", box) == [x0, y0, x1, y1]


@pytest.mark.parametrize("ri", [0, 1, 2])
def test_ring_of_numbers_exterior_then_holes(page, ri):
    assert call(page, "ringOf", TWO_HOLES, 0, ri) == rings_of(TWO_HOLES)[ri]


# -- the whole widget text -------------------------------------------------------------------------
def test_joined_widget_starts_signed_out(page):
    """canvas_js() joins every module into one js_on_load text: it must compile, wire its modules
    without a duplicate name, and show the sign-in hint when nobody is signed in."""
    from annotator.canvas import CANVAS_MODULES, canvas_js

    assert CANVAS_MODULES[0] == "geometry" and CANVAS_MODULES[-1] == "main"
    assert {f.stem for f in CANVAS_DIR.glob("*.js")} == set(CANVAS_MODULES)
    text = canvas_js()
    assert "__SHORTCUTS__" not in text
    hint = page.evaluate(
        """(js) => {
            const element = document.createElement('div');
            element.innerHTML = '<div class="pb-root"></div>';
            document.body.appendChild(element);
            const watched = [];
            const run = new Function('element', 'trigger', 'props', 'server', 'watch', js);
            run(element, () => {}, { value: '' }, {}, (name) => watched.push(name));
            const out = { text: element.textContent, watched, ok: typeof window.__pb === 'object' };
            element.remove();
            return out;
        }""",
        text,
    )
    assert hint == {"text": "Sign in to start.", "watched": ["value"], "ok": True}


# -- the save's rules and the bow-tie repair, shared with core.geometry ---------------------------
CASES_FILE = REPO_ROOT / "tests" / "data" / "geometry_cases.json"


def _check_all(page, cases: list[dict]) -> list[dict]:
    """geometry.js's verdicts on every case, in one round trip: the reason, the repair (null
    when nothing changed) and the repaired geometry's reason."""
    return page.evaluate(
        """(cases) => cases.map((c) => {
            const reason = PBGeometry.check(c.geometry, c.width, c.height, c.max_vertices);
            if (!c.parses) return { reason, repaired: null, repaired_reason: null };
            const rep = PBGeometry.repair(c.geometry);
            const same = JSON.stringify(rep) === JSON.stringify(c.geometry);
            return { reason, repaired: same ? null : rep,
                     repaired_reason: same ? null : PBGeometry.check(rep, c.width, c.height, c.max_vertices) };
        })""",
        cases,
    )


def test_canvas_refuses_and_repairs_the_shared_cases_as_the_server(page):
    """tests/data/geometry_cases.json (checked against core.geometry in
    test_geometry_rules.py): the canvas gives the same reason, word for word, and the same
    repair, point for point."""
    import json

    cases = json.loads(CASES_FILE.read_text())
    got = _check_all(page, cases)
    for case, g in zip(cases, got, strict=True):
        want = {k: case[k] for k in ("reason", "repaired", "repaired_reason")}
        assert g == want, case["name"]


def test_canvas_agrees_with_core_on_random_rings(page):
    """Random rings, many of them self-crossing, at several scales and roundings: verdicts and
    repairs equal core.geometry's exactly (no tolerance: both sides compute the same floats)."""
    from core.geometry import GeometryError, check_geometry, repair_geometry

    rng = np.random.default_rng(7)
    cases = []
    for _ in range(300):
        n = int(rng.integers(3, 10))
        scale = float(rng.choice([1, 10, 100, 3000]))
        ring = (rng.uniform(-0.2, 1.0, (n, 2)) * scale).round(int(rng.integers(0, 4))).tolist()
        if rng.random() < 0.2:
            ring[1] = list(ring[0])
        cases.append(
            {
                "geometry": [{"exterior": ring, "holes": []}],
                "width": 1000,
                "height": 800,
                "max_vertices": 10_000,
                "parses": True,
            }
        )

    def reason(g):
        try:
            check_geometry(g, 1000, 800, max_vertices=10_000)
        except GeometryError as e:
            return str(e)
        return None

    got = _check_all(page, cases)
    crossed = 0
    for case, g in zip(cases, got, strict=True):
        rep = repair_geometry(case["geometry"])
        changed = rep != case["geometry"]
        crossed += changed
        assert g["reason"] == reason(case["geometry"]), case
        assert g["repaired"] == (rep if changed else None), case
        assert g["repaired_reason"] == (reason(rep) if changed else None), case
    assert crossed > 50  # the repair was exercised, not only simple rings


# -- picking among overlapping shapes ---------------------------------------------------------------
BIG = [{"exterior": [[0, 0], [10, 0], [10, 10], [0, 10]], "holes": []}]
SMALL = [{"exterior": [[2, 2], [5, 2], [5, 5], [2, 5]], "holes": []}]


@pytest.mark.parametrize(
    ("pt", "shapes", "expected"),
    [
        # own polygons (rank 0) before a prediction (rank 1) drawn over them, whatever its size
        ([3, 3], [("p", SMALL, 1), ("a", BIG, 0)], ["a", "p"]),
        # the same rank: the smaller first, so a shape inside another stays reachable
        ([3, 3], [("big", BIG, 0), ("small", SMALL, 0)], ["small", "big"]),
        # only the shapes holding the point; a hole does not hold it
        ([8, 8], [("big", BIG, 0), ("small", SMALL, 0)], ["big"]),
        ([4, 4], [("holed", SQUARE_WITH_HOLE, 0)], []),
        # equal rank and area: the given order
        ([3, 3], [("x", BIG, 0), ("y", BIG, 0)], ["x", "y"]),
    ],
)
def test_hits_at_orders_own_polygons_then_smaller(page, pt, shapes, expected):
    given = [{"ref": r, "geometry": g, "rank": k} for r, g, k in shapes]
    assert call(page, "hitsAt", pt, given) == expected


@pytest.mark.parametrize(
    ("refs", "current", "direction", "expected"),
    [
        (["a", "b", "c"], "a", 1, "b"),
        (["a", "b", "c"], "c", 1, "a"),
        (["a", "b", "c"], "a", -1, "c"),
        (["a", "b", "c"], None, 1, "a"),
        (["a", "b", "c"], "z", -1, "c"),
        ([], "a", 1, None),
    ],
)
def test_cycle_wraps_round(page, refs, current, direction, expected):
    assert call(page, "cycle", refs, current, direction) == expected


def _place_labels(boxes: list[dict], gap: float, indent: float) -> list[dict]:
    """Reference: a label that meets one placed before it goes `indent` right and to the first
    placed bottom (plus `gap`), from the top, where it meets none; every pair checked."""
    placed: list[dict] = []
    out = []

    def clear(x: float, y: float, b: dict) -> bool:
        return all(
            not (
                x < p["x"] + p["w"] + gap
                and p["x"] < x + b["w"] + gap
                and y < p["y"] + p["h"] + gap
                and p["y"] < y + b["h"] + gap
            )
            for p in placed
        )

    for b in boxes:
        x, y = b["x"], b["y"]
        if not clear(x, y, b):
            x = b["x"] + indent
            y = min(
                t for t in (p["y"] + p["h"] + gap for p in placed) if t >= b["y"] and clear(x, t, b)
            )
        placed.append({"x": x, "y": y, "w": b["w"], "h": b["h"]})
        out.append({"x": x, "y": y, "moved": (x, y) != (b["x"], b["y"])})
    return out


def test_place_labels_stacks_overlapping_labels_below_each_other(page):
    # Four labels wanted at nearly one spot: the first stays, the others step down in turn.
    boxes = [{"x": 10 + k, "y": 20 + k, "w": 40, "h": 12} for k in range(4)]
    got = call(page, "placeLabels", boxes, 1, 5)
    assert got[0] == {"x": 10, "y": 20, "moved": False}
    assert [g["y"] for g in got] == [20, 33, 46, 59]
    assert [g["x"] for g in got[1:]] == [16, 17, 18]
    # Apart, nothing moves.
    far = [{"x": 0, "y": 0, "w": 10, "h": 5}, {"x": 30, "y": 0, "w": 10, "h": 5}]
    assert [g["moved"] for g in call(page, "placeLabels", far, 1, 5)] == [False, False]


def test_place_labels_matches_reference_and_never_overlaps(page):
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(1, 12))
        boxes = [
            {
                "x": float(rng.integers(0, 60)),
                "y": float(rng.integers(0, 40)),
                "w": float(rng.integers(5, 40)),
                "h": 12.0,
            }
            for _ in range(n)
        ]
        got = call(page, "placeLabels", boxes, 1, 4)
        assert got == _place_labels(boxes, 1, 4)
        for i, a in enumerate(got):
            assert a["y"] >= boxes[i]["y"]
            for j in range(i):
                b = got[j]
                apart = (
                    a["x"] >= b["x"] + boxes[j]["w"] + 1
                    or b["x"] >= a["x"] + boxes[i]["w"] + 1
                    or a["y"] >= b["y"] + 12 + 1
                    or b["y"] >= a["y"] + 12 + 1
                )
                assert apart, (boxes, got, i, j)
