"""End-to-end, in headless Chromium against a real server: an edit is never dropped silently.

A shape the server would refuse is refused at Enter with the reason beside it, a bow-tie is
split, a shape that breaks later stays outlined with its reason while the rest of the photo
keeps saving, leaving a photo with unsaved work asks first (Next, Previous, a filter, closing
the tab), and a reopened tab offers the unsaved edits back. Screenshots go to
artifacts/screenshots/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from browser_helpers import (
    SHOTS,
    Server,
    draw,
    login,
    open_image,
    poll,
    require_chromium,
    to_screen,
)
from browser_helpers import live_annotations as stored
from browser_helpers import seed_workspace as _seed

pytestmark = pytest.mark.browser
require_chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    seeded = _seed(tmp_path_factory.mktemp("edits") / "data", n_synthetic=4, n_predictions=0)
    with Server(seeded.data_dir) as server:
        yield server, seeded


def watch(pg):
    """Collect the page's script errors and dialogs; confirm() gets ``pg.answer``, and
    the browser's own leave question (beforeunload) is always accepted."""
    pg.set_default_timeout(20000)
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.dialogs = []
    pg.answer = False

    def on_dialog(d):
        pg.dialogs.append((d.type, d.message))
        d.accept() if (d.type == "beforeunload" or pg.answer) else d.dismiss()

    pg.on("dialog", on_dialog)
    return pg


@pytest.fixture
def page(browser, world) -> Iterator:
    ctx = browser.new_context(viewport={"width": 1400, "height": 950})
    pg = watch(ctx.new_page())
    yield pg
    assert pg.errors == []
    ctx.close()


def shown_id(page) -> int:
    return page.evaluate("() => window.__pb.image.id")


def wait_for(page, fn: Callable[[], object], what: str, timeout: float = 10.0):
    """Poll ``fn`` until it is truthy. Waits through Playwright, so that the page's events (a
    dialog) are handled meanwhile; time.sleep would hold them back."""
    return poll(fn, what, timeout=timeout, pause=lambda s: page.wait_for_timeout(s * 1000))


def idle(page) -> None:
    page.wait_for_function("() => !window.__pb.saving")


def test_bad_shapes_are_refused_repaired_or_outlined_and_never_block_the_rest(page, world):
    server, seeded = world
    img, other = seeded.image_ids[0], seeded.image_ids[1]
    login(page, server, "annotator1")
    open_image(page, img)

    # Three clicks on one spot and Enter: refused at Enter, the reason beside the points.
    draw(page, [(200, 200), (200, 200), (200, 200)])
    reason = page.locator(".pb-l-rejected .pb-rejected-reason")
    assert "Not added: the points lie on one spot" in reason.text_content()
    assert page.evaluate("() => window.__pb.anns.length") == 0
    box = reason.bounding_box()
    x, y = to_screen(page, 200, 200)
    assert abs(box["x"] - x) < 60 and abs(box["y"] + box["height"] - y) < 40  # next to it
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "edits_00_refused_at_enter.png"))
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    assert reason.count() == 0

    # A straight line too.
    draw(page, [(50, 50), (100, 100), (150, 150)])
    assert "zero area" in reason.text_content()
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")

    # A bow-tie is split where it crosses, and saved as two parts.
    draw(page, [(300, 100), (400, 200), (400, 100), (300, 200)])
    saved = wait_for(page, lambda: stored(img), "the bow-tie's save")
    assert len(saved) == 1 and len(saved[0]["geometry"]) == 2
    assert sorted(p["exterior"][0] for p in saved[0]["geometry"]) == [[350, 150], [350, 150]]

    # A triangle, then an edit that flattens it: dragging one corner onto another.
    draw(page, [(100, 300), (200, 300), (150, 400)])
    wait_for(page, lambda: len(stored(img)) == 2, "the triangle's save")
    idle(page)
    page.mouse.click(*to_screen(page, 150, 330))  # select it
    page.mouse.move(*to_screen(page, 150, 400))
    page.mouse.down()
    page.mouse.move(*to_screen(page, 175, 350), steps=4)
    page.mouse.move(*to_screen(page, 200, 300), steps=4)
    page.mouse.up()
    page.locator(".pb-l-rejected path.pb-rejected").wait_for(state="attached")
    label = page.locator(".pb-l-rejected .pb-rejected-reason")
    assert "Not saved: polygon has zero area" in label.text_content()
    idle(page)
    assert "1 NOT SAVED" in page.locator(".pb-save").inner_text()
    triangle = [[100, 300], [200, 300], [150, 400]]
    assert any(a["geometry"][0]["exterior"] == triangle for a in stored(img)), "kept as stored"

    # The rest of the photo keeps saving meanwhile.
    page.keyboard.press("Escape")
    draw(page, [(450, 300), (550, 300), (550, 400), (450, 400)])
    wait_for(page, lambda: len(stored(img)) == 3, "a later save despite the refused shape")
    assert label.count() == 1  # still outlined, with its reason
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "edits_01_refused_shape.png"))

    # Next asks: staying keeps everything on screen.
    page.click(".pb-next")
    wait_for(page, lambda: page.dialogs, "the leave question")
    assert page.dialogs[-1][0] == "confirm" and "not saved" in page.dialogs[-1][1]
    assert shown_id(page) == img and label.count() == 1

    # Leaving anyway: the next photo starts clean ("NOT SAVED" stays with its photo).
    page.answer = True
    page.click(".pb-next")
    page.wait_for_function(f"() => window.__pb.image.id !== {img}")
    page.wait_for_selector(f'.pb-app[data-drawn="{shown_id(page)}"]')
    assert "NOT SAVED" not in page.locator(".pb-save").inner_text()
    assert label.count() == 0
    page.answer = False

    # Back on the photo, the refused shape is offered back, outlined again; clicking its reason
    # selects it, and deleting it clears the outline and saves (the stored triangle goes too).
    open_image(page, img)
    page.locator(".pb-restore").wait_for()
    page.click(".pb-restore-yes")
    label.wait_for()
    assert "polygon has zero area" in label.text_content()
    idle(page)
    label.click()
    page.keyboard.press("Delete")
    wait_for(page, lambda: label.count() == 0, "the outline to clear")
    wait_for(page, lambda: len(stored(img)) == 2, "the deletion's save")
    idle(page)
    assert "NOT SAVED" not in page.locator(".pb-save").inner_text()
    assert not any(a["geometry"][0]["exterior"] == triangle for a in stored(img))
    assert other


def unsaved_triangle(page, server: Server, img: int, x: float) -> None:
    """annotator1 draws a triangle at ``x`` on ``img`` while saves fail (the server is out of
    reach): the edit exists only in this tab."""
    login(page, server, "annotator1")
    open_image(page, img)
    page.route("**/api/images/*/annotations", lambda route: route.abort())
    draw(page, [(x, 100), (x + 120, 100), (x + 60, 200)])
    page.wait_for_function("() => document.querySelector('.pb-save').textContent === 'NOT SAVED'")


def test_leaving_unsaved_work_asks_and_a_reopened_tab_offers_it_back(page, world):
    server, seeded = world
    img = seeded.image_ids[2]
    unsaved_triangle(page, server, img, 100)
    assert stored(img) == []

    # Previous, Next and a filter change all ask; staying stays, and the filter goes back.
    for what, act in (
        ("Previous", lambda: page.click(".pb-prev")),
        ("Next", lambda: page.click(".pb-next")),
        (
            "a filter",
            lambda: (
                page.click(".pb-filters summary"),
                page.select_option(".pb-f-status", "labelled"),
            ),
        ),
    ):
        n = len(page.dialogs)
        act()
        wait_for(page, lambda n=n: len(page.dialogs) > n, f"the question on {what}")
        assert "not saved" in page.dialogs[-1][1]
        page.wait_for_timeout(200)
        assert shown_id(page) == img
    assert page.input_value(".pb-f-status") == ""
    assert page.evaluate("() => window.__pb.filters.status || ''") == ""

    # Closing the tab asks too (the browser's own question).
    page.unroute("**/api/images/*/annotations")
    page.close(run_before_unload=True)
    tab = watch(page.context.new_page())
    wait_for(tab, lambda: page.is_closed(), "the tab to close")
    assert [t for t, _ in page.dialogs] == ["confirm"] * 3 + ["beforeunload"]

    # Reopened (still signed in: the sign-in cookie): the edits come back with a question.
    page = tab
    page.goto(server.url + "/ui/")
    page.wait_for_selector(".pb-app[data-drawn]")
    if shown_id(page) != img:
        open_image(page, img)
    bar = page.locator(".pb-restore")
    bar.wait_for()
    assert "not saved" in bar.inner_text() and "Restore" in bar.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function("() => !document.body.innerText.includes('processing |')")
    page.screenshot(path=str(SHOTS / "edits_02_restore_prompt.png"))
    page.click(".pb-restore-yes")
    saved = wait_for(page, lambda: stored(img), "the restored edit's save")
    assert saved[0]["geometry"][0]["exterior"] == [[100, 100], [220, 100], [160, 200]]
    idle(page)
    key = f"pb.unsaved:annotator1:{img}"
    assert page.evaluate("k => localStorage.getItem(k)", key) is None  # cleared once saved
    assert page.errors == []


def lease_holder(image_id: int) -> str | None:
    """Who holds a live lease on the photo now, by the database."""
    from db.models import Image, User
    from db.session import session_scope

    with session_scope() as s:
        image = s.get(Image, image_id)
        if image.lease_user_id is None or (image.lease_until or 0) <= time.time():
            return None
        return s.get(User, image.lease_user_id).username


def test_a_new_tab_lists_the_kept_edits_and_keeps_their_photos_leased(page, world):
    server, seeded = world
    img = seeded.image_ids[3]
    unsaved_triangle(page, server, img, 300)
    page.unroute("**/api/images/*/annotations")
    page.close(run_before_unload=True)
    tab = watch(page.context.new_page())
    wait_for(tab, lambda: page.is_closed(), "the tab to close")

    # The new tab lands on the queue's head, lists the kept edits, and the photo stays leased.
    page = tab
    page.goto(server.url + "/ui/")
    page.wait_for_selector(".pb-app[data-drawn]")
    bar = page.locator(".pb-kept")
    bar.wait_for()
    assert "1 photo has unsaved edits" in bar.inner_text()
    assert shown_id(page) != img
    assert lease_holder(img) == "annotator1"
    page.wait_for_function("() => !document.body.innerText.includes('processing |')")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "edits_03_kept_edits_offer.png"))
    page.click(".pb-next")  # moving through the queue keeps it too
    page.wait_for_function(f"() => window.__pb.image.id !== {img}")
    idle(page)
    assert lease_holder(img) == "annotator1"

    # Opening it from the bar offers the edits back; restored, they are saved and the bar goes.
    page.click(f'.pb-kept-open[data-image-id="{img}"]')
    page.wait_for_selector(f'.pb-app[data-drawn="{img}"]')
    page.locator(".pb-restore").wait_for()
    page.click(".pb-restore-yes")
    saved = wait_for(page, lambda: stored(img), "the restored edit's save")
    assert saved[0]["geometry"][0]["exterior"] == [[300, 100], [420, 100], [360, 200]]
    bar.wait_for(state="hidden")
    assert lease_holder(img) == "annotator1"
    assert page.errors == []
