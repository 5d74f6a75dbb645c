"""The workspace's layout at 1440 x 900 (issue 24 §5), in headless Chromium against a real
server: the toolbar fits one row, the predictions are in view without scrolling, class labels
on the canvas never overlap, and the class picker shows each class in the colour its outline
has on the open photo (``static/canvas/palette.js`` ``photoColors`` may recolour a part class)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_helpers import (
    Seeded,
    Server,
    launch,
    login,
    open_image,
    open_page,
    require_chromium,
    seed_workspace,
)

pytestmark = pytest.mark.browser
sync_api = require_chromium()

VIEWPORT = (1440, 900)
#: Crack (damage) and Trunk (part): the default palette gives them near colours, so on one photo
#: Trunk is recoloured (tests/test_browser_photo_colours.py).
CRACK, TRUNK = 4, 38


def box(x0: float, y0: float, x1: float, y1: float) -> list[dict]:
    return [{"exterior": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "holes": []}]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Server, Seeded]]:
    from db.session import session_scope
    from services.labelling import saves

    seeded = seed_workspace(tmp_path_factory.mktemp("layout") / "data", n_synthetic=2)
    with session_scope() as s:
        # Four boxes whose top left corners nearly meet: their labels would cover each other.
        saves.save_annotations(
            s,
            image_id=seeded.image_ids[1],
            expected_version=0,
            annotations=[
                {"class_id": CRACK, "geometry": box(40, 250, 300, 420)},
                {"class_id": TRUNK, "geometry": box(50, 255, 600, 460)},
                {"class_id": 2, "geometry": box(60, 258, 200, 400)},
                {"class_id": 3, "geometry": box(45, 262, 150, 380)},
            ],
            author="annotator1",
        )
    server = Server(seeded.data_dir)
    yield server, seeded
    server.stop()


@pytest.fixture(scope="module")
def page(world):
    server, _ = world
    with launch(sync_api) as browser:
        ctx, pg = open_page(browser, viewport=VIEWPORT)
        login(pg, server, "annotator1")
        yield pg
        ctx.close()


def test_toolbar_fits_one_row_and_filters_open_from_it(page) -> None:
    items = page.evaluate(
        """() => [...document.querySelectorAll('.pb-toolbar > *')]
          .filter(e => e.getClientRects().length)
          .map(e => { const r = e.getBoundingClientRect(); return [e.className, r.top, r.bottom]; })"""
    )
    assert len(items) > 10
    mids = [(top + bottom) / 2 for _, top, bottom in items]
    assert max(mids) - min(mids) < 8, items  # one row: every control on one middle line
    bar = page.locator(".pb-toolbar").bounding_box()
    assert bar["height"] < 48, bar
    # The queue filters wait behind one button; opened, they drop below it, over the stage.
    assert not page.locator(".pb-f-status").is_visible()
    page.click(".pb-filters summary")
    status = page.locator(".pb-f-status").bounding_box()
    assert status["y"] > bar["y"] + bar["height"] - 4
    page.click(".pb-filters summary")
    assert not page.locator(".pb-f-status").is_visible()


def test_predictions_in_view_and_assist_card_only_with_its_tool(page, world) -> None:
    _, seeded = world
    open_image(page, seeded.image_ids[0])
    card = page.locator(".pb-preds-card").bounding_box()
    side = page.locator(".pb-side").bounding_box()
    assert card["y"] + card["height"] <= min(VIEWPORT[1], side["y"] + side["height"]), (card, side)
    assert page.evaluate("document.querySelector('.pb-side').scrollTop") == 0
    # Its own rows, where the model's predictions stand on this photo, are in view too.
    for row in page.locator(".pb-pred-row").all():
        r = row.bounding_box()
        assert r["y"] + r["height"] <= VIEWPORT[1]
    assert not page.locator(".pb-assist-card").is_visible()
    page.locator(".pb-svg").click(position={"x": 5, "y": 5})
    page.keyboard.press("a")
    assert page.locator(".pb-assist-card").is_visible()
    page.keyboard.press("v")
    assert not page.locator(".pb-assist-card").is_visible()


def test_class_buttons_show_the_photos_colours(page, world) -> None:
    _, seeded = world
    open_image(page, seeded.image_ids[1])
    colours = page.evaluate("() => window.__pb.photoColors")
    base = page.evaluate(f"() => window.__pb.byId[{TRUNK}].color")
    assert colours[str(TRUNK)] != base  # Trunk is recoloured on this photo
    for cid in (CRACK, TRUNK, 2, 3):
        outline = page.evaluate(
            "(id) => { const a = window.__pb.anns.find(x => x.class_id === id);"
            " return getComputedStyle(document.querySelector(`.pb-ann[data-key='${a.key}']`)).stroke; }",
            cid,
        )
        button = page.evaluate(
            "(id) => getComputedStyle(document.querySelector("
            "`.pb-classlist .pb-class-btn[data-id='${id}']`)).borderLeftColor",
            cid,
        )
        assert button == outline, (cid, button, outline)
