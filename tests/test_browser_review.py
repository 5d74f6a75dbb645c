"""End-to-end review at a glance and class picking, headless Chromium against a real
server: roles land where they work, a rejected instance sends its photo back to the author's
queue head with "rejected: <comment>" and a count, the class search finds "windscreen" and
"fl door", and selecting a polygon leaves the class for new drawings alone.

Set ``PB_SHOTS=<folder>`` to keep screenshots of the class picker and the rejected photo.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import (
    Seeded,
    Server,
    draw,
    live_annotations,
    require_chromium,
    seed_workspace,
    to_screen,
)
from test_browser_workspace import image_row, new_page, wait_db

pytestmark = pytest.mark.browser
require_chromium()

SQUARE = [{"exterior": [[100, 100], [260, 100], [260, 220], [100, 220]], "holes": []}]
TRIANGLE = [{"exterior": [[380, 260], [520, 260], [450, 380]], "holes": []}]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Server, Seeded]]:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import get_user
    from services.labelling import saves, statuses

    data = tmp_path_factory.mktemp("review") / "data"
    seeded = seed_workspace(data, n_synthetic=4)  # photo 0 has a fake-damage prediction
    with session_scope() as s:  # annotator1 labels photo 2: two dents
        project, author = get_or_create_project(s), get_user(s, "annotator1")
        img = seeded.image_ids[2]
        saves.save_annotations_as(
            s,
            author,
            project=project,
            image_id=img,
            expected_version=0,
            annotations=[{"class_id": 1, "geometry": g} for g in (SQUARE, TRIANGLE)],
        )
        statuses.set_status_as(s, author, project=project, image_id=img, status="labelled")
        # photo 1: a mirror imported from a side-less label (the map chose the left side)
        saves.save_annotations(
            s,
            image_id=seeded.image_ids[1],
            expected_version=0,
            annotations=[{"class_id": 54, "geometry": SQUARE, "attributes": {"side": "unknown"}}],
            author="import:public.json",
        )
    with Server(data) as server:
        yield server, seeded


def shot(page, name: str) -> None:
    if os.environ.get("PB_SHOTS"):
        Path(os.environ["PB_SHOTS"]).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(os.environ["PB_SHOTS"]) / f"{name}.png"))


def test_roles_land_where_they_work_and_rejections_reach_the_author(browser, world) -> None:
    server, seeded = world
    labelled, flagged = seeded.image_ids[2], seeded.image_ids[0]
    first_dent = live_annotations(labelled)[0]

    # the reviewer lands in Review mode, on the labelled photo
    ctx, page = new_page(browser, server, "reviewer1")
    assert page.evaluate("window.__pb.mode") == "review"
    assert page.locator(".pb-mode").input_value() == "review"
    page.wait_for_selector(f'.pb-app[data-drawn="{labelled}"]')
    # select the square and reject just that instance, with a reason
    page.mouse.click(*to_screen(page, 180, 160))
    page.wait_for_selector(".pb-inst-reject")
    page.click(".pb-inst-reject")  # no reason: refused, nothing changes
    page.wait_for_selector(".pb-msg.pb-bad")
    assert image_row(labelled).status.value == "labelled"
    page.fill(".pb-inst-reason", "misses the lower edge")
    page.click(".pb-inst-reject")
    row = wait_db(
        lambda: (r := image_row(labelled)).status.value == "rejected" and r, what="rejection"
    )
    assert row.rejected_for == "annotator1" and "misses the lower edge" in row.review_comment
    states = {a["id"]: a["review_state"] for a in live_annotations(labelled)}
    assert states[first_dent["id"]] == "rejected" and list(states.values()).count(None) == 1
    page.wait_for_selector(".pb-inst-state:has-text('rejected by reviewer1')")
    assert not page.errors
    ctx.close()

    # the fraud analyst lands in the fraud queue, on the flagged photo
    ctx, page = new_page(browser, server, "fraud_analyst1")
    assert page.evaluate("window.__pb.mode") == "fraud"
    assert page.evaluate("window.__pb.filters.flagged") == "true"
    page.wait_for_selector(f'.pb-app[data-drawn="{flagged}"]')
    ctx.close()

    # the author gets the rejected photo first, marked, with the count of rejections waiting
    ctx, page = new_page(browser, server, "annotator1")
    assert page.evaluate("window.__pb.mode") == "annotate"
    page.wait_for_selector(f'.pb-app[data-drawn="{labelled}"]')
    assert page.evaluate("window.__pb.queue.position") == 1
    comment = page.locator(".pb-review-comment").inner_text()
    assert comment.startswith("rejected: ") and "misses the lower edge" in comment
    assert page.locator(".pb-rejections").inner_text().startswith("1 rejected")
    page.mouse.click(*to_screen(page, 180, 160))
    page.wait_for_selector(".pb-inst-state:has-text('misses the lower edge')")
    shot(page, "review_rejected_photo_for_author")
    assert not page.errors
    ctx.close()


def test_class_search_and_selection_keeps_the_drawing_class(browser, world) -> None:
    server, seeded = world
    img = seeded.image_ids[3]
    ctx, page = new_page(browser, server, "lead1")
    page.evaluate("id => window.__pb.openImage(id)", img)
    page.wait_for_selector(f'.pb-app[data-drawn="{img}"]')
    # all three groups show, without scrolling the side panel
    for group in ("damage", "fake", "part"):
        box = page.locator(f'[data-group-h="{group}"]').bounding_box()
        assert box is not None and box["y"] + box["height"] < 950, group
    shot(page, "class_picker_groups")
    first = page.locator(".pb-classlist .pb-class-btn").first
    page.fill(".pb-class-search", "windscreen")
    assert first.get_attribute("data-id") == "40"  # front_windshield, by its synonym
    shot(page, "class_picker_windscreen")
    page.fill(".pb-class-search", "fl door")
    assert first.get_attribute("data-id") == "42"  # front_left_door
    page.press(".pb-class-search", "Enter")
    assert page.evaluate("window.__pb.currentClass") == 42
    # a drawing gets the picked class; relabelling the selected polygon is its own select
    draw(page, [(100, 100), (260, 100), (260, 220), (100, 220)])
    wait_db(lambda: [a["class_id"] for a in live_annotations(img)] == [42], what="drawn door")
    page.select_option(".pb-sel-class-pick", "1")  # the polygon becomes a dent
    wait_db(lambda: [a["class_id"] for a in live_annotations(img)] == [1], what="relabelled")
    # selecting it (a dent) leaves the drawing class at the door
    page.keyboard.press("Escape")
    page.mouse.click(*to_screen(page, 180, 160))
    page.wait_for_selector(".pb-sel-class-pick")
    assert page.evaluate("window.__pb.currentClass") == 42
    assert "Front left door" in page.locator(".pb-current-class").inner_text()
    page.keyboard.press("Escape")
    draw(page, [(380, 260), (520, 260), (450, 380)])
    wait_db(
        lambda: sorted(a["class_id"] for a in live_annotations(img)) == [1, 42],
        what="second drawing keeps the picked class",
    )

    # the lead's side list: the side-less mirror, its photo, and a button per side
    mirror = seeded.image_ids[1]
    page.select_option(".pb-mode", "sides")
    page.wait_for_selector(f'.pb-app[data-drawn="{mirror}"]')
    page.wait_for_function("document.querySelector('.pb-side-thumb').naturalWidth > 0")
    assert page.locator(".pb-side-row").count() == 1
    assert page.evaluate("window.__pb.anns.find((a) => a.key === window.__pb.sel).class_id") == 54
    shot(page, "sides_to_resolve")
    page.click('.pb-side-set[data-class="right_mirror"]')
    wait_db(
        lambda: [(a["class_id"], a["attributes"]) for a in live_annotations(mirror)] == [(55, {})],
        what="side resolved",
    )
    page.wait_for_selector(".pb-sides:has-text('No instance waits')")
    assert not page.errors
    ctx.close()
