"""The canvas does what CVAT users expect, in headless Chromium against a real server.

A click inside one's own polygon selects it even under a pending prediction, a second click
or Tab goes on to the next shape there, and the side card follows; keys 1-9 relabel the
selected polygon or, with nothing selected, set the class of new polygons; an instance
imported without a side says "side?". Set ``PB_SHOTS=<folder>`` to keep screenshots.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import (
    Seeded,
    Server,
    live_annotations,
    login,
    open_image,
    open_page,
    require_chromium,
    seed_workspace,
    signed_in_page,
    to_screen,
)

pytestmark = pytest.mark.browser
require_chromium()


def box(x0: float, y0: float, x1: float, y1: float) -> list[dict]:
    return [{"exterior": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "holes": []}]


# Photo 0's pending predictions (browser_helpers.seed_workspace): a "Damage (unspecified)"
# at (100, 100)-(220, 200) lies inside the annotator's dent below.
DENT = box(80, 80, 250, 230)
MIRROR = box(440, 300, 560, 420)
SEVERE = {"severity": "severe"}  # imported from a side-less label, stored as left_mirror


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Server, Seeded]]:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import get_user
    from services.labelling import readers, saves
    from services.review.decisions import review_instance_as

    seeded = seed_workspace(tmp_path_factory.mktemp("cvat") / "data", n_synthetic=3)
    with session_scope() as s:
        saves.save_annotations(
            s,
            image_id=seeded.image_ids[0],
            expected_version=0,
            annotations=[
                {"class_id": 1, "geometry": DENT},
                {"class_id": 54, "geometry": MIRROR, "attributes": {"side": "unknown"}},
            ],
            author="import:public.json",
        )
        # Photo 1: a dent the reviewer rejected, a scratch confirmed fake, severe damage.
        saves.save_annotations(
            s,
            image_id=seeded.image_ids[1],
            expected_version=0,
            annotations=[
                {"class_id": 1, "geometry": box(60, 60, 200, 160)},
                {"class_id": 2, "geometry": box(260, 80, 400, 200), "attributes": {"fake": True}},
                {"class_id": 3, "geometry": box(300, 280, 480, 420), "attributes": SEVERE},
            ],
            author="annotator1",
        )
        rows = readers.annotation_dicts(s, seeded.image_ids[1])
        review_instance_as(
            s,
            get_user(s, seeded.users["reviewer"]),
            project=get_or_create_project(s),
            image_id=seeded.image_ids[1],
            annotation_id=rows[0]["id"],
            decision="rejected",
            reason="the dent ends at the wheel arch",
        )
    with Server(seeded.data_dir) as server:
        yield server, seeded


@pytest.fixture
def page(browser) -> Iterator:
    ctx, pg = open_page(browser, viewport=(1440, 900))
    yield pg
    assert pg.errors == []
    ctx.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("PB_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"cvat_{name}.png"))


def selected(page) -> str | None:
    """'a:<class id>' for a selected polygon, 'p:<class id>' for a selected prediction."""
    return page.evaluate(
        """() => { const S = window.__pb;
        if (S.sel != null) return 'a:' + S.anns.find((a) => a.key === S.sel).class_id;
        if (S.selPred != null) return 'p:' + S.preds.find((p) => p.id === S.selPred).class_id;
        return null; }"""
    )


def test_click_picks_own_polygon_under_a_prediction_and_cycles(page, world):
    server, seeded = world
    login(page, server, seeded.users["annotator"])
    open_image(page, seeded.image_ids[0])
    inside_both = to_screen(page, 150, 150)

    page.mouse.click(*inside_both)
    assert selected(page) == "a:1"  # the dent, although the prediction is drawn over it
    assert page.locator(".pb-attrs .pb-sel-class").text_content().startswith("Dent")
    shot(page, "selected_under_prediction")

    page.mouse.click(*inside_both)  # again, without dragging: the prediction under it
    assert selected(page) == "p:26"
    card = page.locator(".pb-attrs .pb-sel-pred")
    assert "Prediction: Damage (unspecified)" in card.text_content()
    assert page.locator(".pb-attrs .pb-pred-accept").is_visible()
    assert page.locator(".pb-pred-row.pb-selected").count() == 1
    shot(page, "second_click_prediction")

    page.mouse.click(*inside_both)  # and round again
    assert selected(page) == "a:1"
    page.keyboard.press("Tab")
    assert selected(page) == "p:26"
    page.keyboard.press("Shift+Tab")
    assert selected(page) == "a:1"
    # A click that selects and does not drag moved nothing.
    assert page.evaluate("() => window.__pb.anns[0].geometry") == DENT

    # Outside everything: nothing selected, and the card says how to select.
    page.mouse.click(*to_screen(page, 600, 40))
    assert selected(page) is None
    assert "Select a polygon" in page.locator(".pb-attrs").text_content()


def test_number_keys_relabel_the_selection_or_set_the_class_for_new_polygons(page, world):
    server, seeded = world
    img = seeded.image_ids[0]
    login(page, server, seeded.users["annotator"])
    open_image(page, img)
    for cid in (3, 2):  # recent classes: 1 = class 2, 2 = class 3
        page.click(f'.pb-classlist button[data-id="{cid}"]')
    assert page.evaluate("() => window.__pb.recent.slice(0, 2)") == [2, 3]

    page.mouse.click(*to_screen(page, 150, 150))
    assert selected(page) == "a:1"
    page.keyboard.press("2")
    assert selected(page) == "a:3"
    page.wait_for_function(
        "() => !window.__pb.saving && window.__pb.changeSeq === window.__pb.savedSeq"
    )
    assert sorted(a["class_id"] for a in live_annotations(img)) == [3, 54]
    # The key did not also change the class of new polygons, nor reorder the keys.
    assert page.evaluate("() => [window.__pb.currentClass, ...window.__pb.recent.slice(0, 2)]") == [
        2,
        2,
        3,
    ]

    page.keyboard.press("Escape")
    assert selected(page) is None
    page.keyboard.press("2")
    assert page.evaluate("() => window.__pb.currentClass") == 3
    assert sorted(a["class_id"] for a in live_annotations(img)) == [3, 54]
    assert "new polygons: " in page.locator(".pb-current-class").text_content()
    # Undo puts the dent back, as for any other edit.
    page.keyboard.press("Control+z")
    page.wait_for_function(
        "() => !window.__pb.saving && window.__pb.changeSeq === window.__pb.savedSeq"
    )
    assert sorted(a["class_id"] for a in live_annotations(img)) == [1, 54]


def test_an_instance_imported_without_a_side_says_side_unknown(page, world):
    server, seeded = world
    login(page, server, seeded.users["annotator"])
    open_image(page, seeded.image_ids[0])
    labels = page.locator(".pb-l-labels text").all_text_contents()
    assert "Mirror · side?" in labels
    assert not any("Left mirror" in t for t in labels)
    page.mouse.click(*to_screen(page, 500, 360))
    assert page.locator(".pb-attrs .pb-sel-class").text_content().startswith("Mirror · side?")
    assert page.locator(".pb-attrs .pb-side-unknown").is_visible()
    shot(page, "side_unknown")


def marks(page) -> dict[int, str]:
    """Each marked polygon's class id and its badge."""
    found = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.pb-l-marks text')].map((t) =>
        [window.__pb.anns.find((a) => a.key === +t.dataset.key).class_id, t.textContent]))"""
    )
    return {int(k): v for k, v in found.items()}


def outline(page, class_id: int) -> list[str]:
    return page.evaluate(
        """(cid) => { const a = window.__pb.anns.find((x) => x.class_id === cid);
        return [...document.querySelector(`.pb-ann[data-key="${a.key}"]`).classList]; }""",
        class_id,
    )


def test_rejected_fake_and_suspect_polygons_are_marked_on_the_canvas(browser, world):
    server, seeded = world
    img = seeded.image_ids[1]
    # The author: the rejected dent and the confirmed fake are marked; no fraud check is shown
    # to a role that may not see it.
    ctx, page = signed_in_page(browser, server, seeded.users["annotator"], viewport=(1440, 900))
    open_image(page, img)
    assert marks(page) == {1: "✗ rejected", 2: "fake"}
    assert "pb-inst-rejected" in outline(page, 1) and "pb-fake" in outline(page, 2)
    page.keyboard.press("l")  # class names hidden: the badges stay
    assert marks(page) == {1: "✗ rejected", 2: "fake"}
    page.keyboard.press("l")
    shot(page, "marks_annotator")
    assert page.errors == []
    ctx.close()

    # The fraud analyst in the fraud queue: the suspects glow, the first is selected and its
    # card names the reason.
    ctx, page = signed_in_page(
        browser, server, seeded.users["fraud_analyst"], wait_for=".pb-app", viewport=(1440, 900)
    )
    page.wait_for_function("() => window.__pb.mode === 'fraud'")
    open_image(page, img)
    page.wait_for_function("() => window.__pb.suspects && window.__pb.suspects.size === 2")
    assert marks(page) == {1: "✗ rejected", 2: "fake · ⚠ fraud check", 3: "⚠ fraud check"}
    assert "pb-suspect" in outline(page, 3) and "pb-suspect" not in outline(page, 1)
    page.wait_for_selector(".pb-attrs .pb-suspect-reason")
    assert selected(page) == "a:2"
    assert page.locator(".pb-suspect-reason").text_content() == (
        "Fraud check: scratch is flagged as fake damage"
    )
    page.mouse.click(*to_screen(page, 390, 350))
    assert page.locator(".pb-suspect-reason").text_content() == (
        "Fraud check: scrape has severe severity"
    )
    shot(page, "marks_fraud_queue")
    assert page.errors == []
    ctx.close()


def leases_of(username: str) -> list[int]:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.labelling.leases import list_leases

    with session_scope() as s:
        rows = list_leases(s, get_or_create_project(s).id)
    return [r["image_id"] for r in rows if r["user"] == username]


def test_a_lead_lands_on_the_dashboard_and_takes_no_lease_until_the_workspace_opens(page, world):
    server, seeded = world
    lead = seeded.users["lead"]
    login(page, server, lead, wait_for=None)
    page.wait_for_selector("#pb-dash-summary:has-text('photos')")
    assert page.get_by_role("tab", name="Dashboard").get_attribute("aria-selected") == "true"
    shot(page, "lead_lands_on_dashboard")
    page.wait_for_timeout(1500)  # time enough for a workspace that would load on its own
    assert leases_of(lead) == []
    assert page.get_by_text("Sign in first").count() == 0  # its events waited for the cookie
    assert page.evaluate("() => !window.__pb || window.__pb.queue === null")

    page.get_by_role("tab", name="Workspace").click()
    page.wait_for_selector(".pb-app[data-drawn]")
    assert leases_of(lead) == [page.evaluate("() => window.__pb.image.id")]
    page.evaluate(  # give it back: the other tests open this photo
        "t => fetch('/api/leases/release', {method: 'POST', headers: {Authorization: 'Bearer ' + t}})",
        page.evaluate("() => window.__pb.session.token"),
    )


def test_recent_classes_follow_the_user_into_another_browser(browser, world):
    server, seeded = world
    user = seeded.users["reviewer"]
    ctx, first = open_page(browser, viewport=(1440, 900))
    login(first, server, user, wait_for=".pb-app")
    first.wait_for_function("() => window.__pb.classes.length > 0")
    for cid in (5, 4):
        first.click(f'.pb-classlist button[data-id="{cid}"]')
    first.wait_for_function(
        "() => fetch('/api/me/recent-classes', {headers: {Authorization: 'Bearer ' + "
        "window.__pb.session.token}}).then((r) => r.json()).then((r) => r.class_ids.join() === '4,5')"
    )
    assert first.errors == []
    ctx.close()

    # Another browser (a fresh context: no localStorage), the same user: the same keys 1-9.
    ctx, second = open_page(browser, viewport=(1440, 900))
    login(second, server, user, wait_for=".pb-app")
    second.wait_for_selector(".pb-recent .pb-recent-btn")
    assert second.evaluate("() => window.__pb.recent") == [4, 5]
    assert second.locator(".pb-recent .pb-recent-btn").first.get_attribute("data-id") == "4"
    shot(second, "recent_classes_second_browser")
    assert second.errors == []
    ctx.close()
