"""Sharp zoom, class labels, the legend and the reviewer's comment on the canvas, end to end.

Headless Chromium against a real server on loopback, on a 12-MP photo made on the fly. Zoomed
to 400%, the canvas must ask ``/api/images/{id}/region`` for the visible rectangle and draw it:
the stage's pixels then carry the photo's fine grain, which the screen-sized copy has lost
(measured as the mean absolute difference between neighbouring screen pixels). The class
palette (``static/canvas/palette.js``) is checked in a blank page against an OKLab distance
computed here.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import (
    SHOTS,
    Seeded,
    Server,
    launch,
    login,
    open_image,
    open_page,
    require_chromium,
    seed_workspace,
)
from conftest import REPO_ROOT
from PIL import Image as PILImage
from sqlmodel import select

pytestmark = pytest.mark.browser

sync_api = require_chromium()
PALETTE_JS = REPO_ROOT / "annotator" / "static" / "canvas" / "palette.js"
COMMENT = "The dent on the left door is missing; redraw the scratch tighter."
CLASSES = (1, 2, 3, 34)  # dent, scratch, scrape, front bumper


def _big_photo(path: Path, width: int = 4000, height: int = 3000) -> None:
    """A 12-MP JPEG: colour gradients with a fine grain of noise that a downscaled copy loses.
    (browser_helpers.synthetic_photo takes seconds at this size.)"""
    rng = np.random.default_rng(3)
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = np.linspace(0, 230, width, dtype=np.float32)[None, :]
    img[..., 1] = np.linspace(0, 230, height, dtype=np.float32)[:, None]
    img[..., 2] = 110
    img += rng.integers(0, 24, img.shape, dtype=np.uint8)
    path.parent.mkdir(parents=True)
    PILImage.fromarray(img).save(path, quality=90)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Server, Seeded, int]]:
    from db.models import Annotation, AnnotationSource, Image, ImageStatus
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_folder

    data = tmp_path_factory.mktemp("zoom") / "data"
    with pytest.MonkeyPatch.context() as mp:  # conftest's cheap hashes are per test
        mp.setattr("services.accounts.users._scrypt_n_for_tests", 2**10)
        seeded = seed_workspace(data, n_synthetic=1, n_predictions=0)
    _big_photo(data / "photos_big" / "big.jpg")
    with session_scope() as s:
        import_folder(s, get_or_create_project(s), data / "photos_big")
        big = s.exec(select(Image.id).where(Image.width == 4000)).one()
        image = s.get(Image, big)
        image.status = ImageStatus.rejected
        image.review_comment = COMMENT
        for k, class_id in enumerate(CLASSES):
            x0, y0 = 300 + 900 * k, 400 + 500 * (k % 2)
            ring = [[x0, y0], [x0 + 600, y0], [x0 + 600, y0 + 450], [x0, y0 + 450]]
            s.add(
                Annotation(
                    image_id=big,
                    class_id=class_id,
                    group="part" if class_id == 34 else "damage",
                    geometry=[{"exterior": ring, "holes": []}],
                    source=AnnotationSource.imported,
                    author="test",
                )
            )
    with Server(data) as server:
        yield server, seeded, big


@pytest.fixture(scope="module")
def browser():
    """Without the world: the palette test needs no server."""
    with launch(sync_api) as b:
        yield b


def _oklab(hex_color: str) -> np.ndarray:
    """sRGB '#rrggbb' to OKLab (Björn Ottosson's matrices), written here independently of JS."""
    c = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lms = np.cbrt(
        np.array(
            [
                [0.4122214708, 0.5363325363, 0.0514459929],
                [0.2119034982, 0.6806995451, 0.1073969566],
                [0.0883024619, 0.2817188376, 0.6299787005],
            ]
        )
        @ lin
    )
    return (
        np.array(
            [
                [0.2104542553, 0.7936177850, -0.0040720468],
                [1.9779984951, -2.4285922050, 0.4505937099],
                [0.0259040371, 0.7827717662, -0.8086757660],
            ]
        )
        @ lms
    )


def _group_distances(colors: dict[int, str], classes: list[dict]) -> dict[str, tuple[float, float]]:
    """Per group: (smallest distance between classes next to each other in id order,
    smallest distance between any two classes)."""
    out = {}
    for g in ("damage", "fake", "part"):
        ids = sorted(c["id"] for c in classes if c["group"] == g)
        lab = [_oklab(colors[i]) for i in ids]
        neighbours = min(np.linalg.norm(a - b) for a, b in zip(lab, lab[1:], strict=False))
        pairs = min(
            np.linalg.norm(lab[i] - lab[j]) for i in range(len(lab)) for j in range(i + 1, len(lab))
        )
        out[g] = (float(neighbours), float(pairs))
    return out


def test_class_colours_are_distinct_within_each_group(browser) -> None:
    from core.taxonomy import default_taxonomy

    classes = [c.as_dict() for c in default_taxonomy().classes]
    page = browser.new_page()
    page.set_content("<html><body></body></html>")
    page.add_script_tag(content=PALETTE_JS.read_text() + "\nwindow.PBPalette = PBPalette;")
    colors = {
        int(k): v for k, v in page.evaluate("(c) => PBPalette.classColors(c)", classes).items()
    }
    page.close()
    assert set(colors) == {c["id"] for c in classes}
    assert all(len(v) == 7 and v.startswith("#") for v in colors.values())
    # OKLab distance: ~0.02 is a just-noticeable difference; 0.08 is plainly another colour.
    for group, (neighbours, pairs) in _group_distances(colors, classes).items():
        assert neighbours >= 0.08, (group, neighbours)
        assert pairs >= 0.04, (group, pairs)
    # The taxonomy's own shades (what the canvas drew before) fail the same check.
    old = _group_distances({c["id"]: c["color"] for c in classes}, classes)
    assert old["damage"][0] < 0.08


def _stage_grain(page, clip: dict) -> float:
    """Mean absolute difference between horizontally neighbouring pixels of a screen area."""
    png = page.screenshot(clip=clip)
    a = np.asarray(PILImage.open(io.BytesIO(png)).convert("L")).astype(np.int16)
    return float(np.abs(np.diff(a, axis=1)).mean())


def test_zoom_sharp_region_labels_legend_comment(world, browser) -> None:
    server, seeded, big = world
    ctx, page = open_page(browser)
    errors = page.errors
    regions: list[str] = []
    page.on("request", lambda r: regions.append(r.url) if "/region?" in r.url else None)
    login(page, server, seeded.users["annotator"])
    open_image(page, big)

    # The reviewer's comment on the canvas; the legend lists the photo's classes.
    comment = page.locator(".pb-canvas-comment")
    assert comment.is_visible() and COMMENT in comment.inner_text()
    names = page.evaluate(
        "[...document.querySelectorAll('.pb-legend-row')].map(r => +r.dataset.id)"
    )
    assert sorted(names) == sorted(CLASSES)
    assert "Front bumper" in page.locator(".pb-legend").inner_text()

    # Class names on the polygons; L hides and shows them.
    labels = page.locator(".pb-l-labels .pb-ann-label")
    assert labels.count() == len(CLASSES)
    assert "Dent" in page.locator(".pb-l-labels").text_content()
    page.locator(".pb-svg").click(position={"x": 5, "y": 5})  # focus the canvas, select nothing
    page.keyboard.press("l")
    assert labels.count() == 0 and page.evaluate("window.__pb.showLabels") is False
    page.keyboard.press("l")
    assert labels.count() == len(CLASSES)

    # Zoom buttons and readout: fit is about 21%; + zooms by 1.25 about the centre.
    level = page.locator(".pb-zoom-level")
    fit = float(level.inner_text().rstrip("%"))
    assert 10 < fit < 40, fit
    page.click(".pb-zoom-in")
    assert float(level.inner_text().rstrip("%")) == pytest.approx(fit * 1.25, abs=0.2)
    page.click(".pb-zoom-out")
    assert float(level.inner_text().rstrip("%")) == pytest.approx(fit, abs=0.2)
    assert not regions, "no region is needed while the copy is sharp enough"

    # 400% on the 12-MP photo: the visible region comes at full resolution and is drawn.
    page.evaluate("window.__pb.zoomTo(400, [2100, 1500])")
    assert level.inner_text() == "400%"
    page.wait_for_function(f"window.__pb.region && window.__pb.region.id === {big}")
    assert regions and f"/api/images/{big}/region?" in regions[-1] and "scale=1" in regions[-1]
    r = page.evaluate("window.__pb.region")
    assert r["x"] <= 2100 <= r["x"] + r["w"] and r["y"] <= 1500 <= r["y"] + r["h"]
    box = page.locator(".pb-svg").bounding_box()
    clip = {"x": box["x"] + box["width"] / 2 - 60, "y": box["y"] + box["height"] / 2 - 60}
    clip.update(width=120, height=120)
    page.wait_for_timeout(100)
    sharp = _stage_grain(page, clip)
    page.evaluate("document.querySelector('.pb-region').style.display = 'none'")
    blurry = _stage_grain(page, clip)
    page.evaluate("document.querySelector('.pb-region').style.display = ''")
    assert sharp > 2 * blurry, (sharp, blurry)

    # A small pan stays inside the region already drawn: no new request.
    n = len(regions)
    page.evaluate("window.__pb.vb.x += 20; window.__pb.vb.y += 10;")
    page.evaluate("window.__pb.zoomTo(400)")
    page.wait_for_timeout(400)
    assert len(regions) == n

    # Zoom to the selected polygon: fit, select the scratch, press F.
    page.keyboard.press("0")
    assert float(level.inner_text().rstrip("%")) == pytest.approx(fit, abs=0.2)
    page.evaluate(
        "(() => { const a = window.__pb.anns.find(a => a.class_id === 2);"
        " window.__pb.sel = a.key; })()"
    )
    page.keyboard.press("f")
    zoomed = float(level.inner_text().rstrip("%"))
    assert zoomed > 2 * fit, (zoomed, fit)
    # The scratch (600 x 450 px at x 1200, y 900) fills the view but for the margin.
    view = page.evaluate(
        "(() => { const s = document.querySelector('.pb-svg'), m = s.getScreenCTM().inverse(),"
        " r = s.getBoundingClientRect(), p = (x, y) => { const q = s.createSVGPoint(); q.x = x;"
        " q.y = y; return q.matrixTransform(m); }, a = p(r.left, r.top), b = p(r.right, r.bottom);"
        " return [a.x, a.y, b.x, b.y]; })()"
    )
    assert view[0] <= 1200 and view[2] >= 1800 and view[1] <= 900 and view[3] >= 1350, view
    assert (view[3] - view[1]) < 450 * 2 or (view[2] - view[0]) < 600 * 2, view
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "zoom_selected.png"))
    assert not errors, errors
    ctx.close()


def test_the_help_lists_the_zoom_and_label_keys() -> None:
    from annotator.shortcuts import SHORTCUTS

    keys = json.dumps(SHORTCUTS)
    assert '"L"' in keys and '"F"' in keys and '"+ / -"' in keys
