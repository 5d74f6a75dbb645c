"""End-to-end: headless Chromium against a real server on loopback; every test checks the database.

Photos: two real ones from the datasets (when present) and synthetic ones. Screenshots of
the key screens go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from browser_helpers import (
    SHOTS,
    Seeded,
    Server,
    draw,
    live_annotations,
    open_image,
    open_page,
    poll,
    require_chromium,
    seed_workspace,
    to_screen,
)
from browser_helpers import login as sign_in
from conftest import REPO_ROOT, SHARED_DATASETS

pytestmark = pytest.mark.browser

XSS_NAME = "<script>window.__xss=1</script>Scuff"

require_chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Server, Seeded]]:
    base = tmp_path_factory.mktemp("browser")
    data = base / "data"
    real = sorted((SHARED_DATASETS / "coco_car_damage" / "train").glob("*.jpg"))[:2]
    # A taxonomy whose class name carries a script: it must show up as text.
    tax = base / "taxonomy.yaml"
    text = (REPO_ROOT / "core" / "taxonomy.yaml").read_text()
    tax.write_text(text.replace('display_name: "Scuff"', f'display_name: "{XSS_NAME}"'))
    seeded = seed_workspace(data, n_synthetic=6, real_photos=real, taxonomy_path=tax)
    # These tests share photos between users (two editors, a conflict); queue leases, which
    # would open a photo read-only to the second, expire at once here (tests/test_browser_leases).
    env = {"PANELBEATER_TAXONOMY_PATH": str(tax), "PANELBEATER_LEASE_TTL_SECONDS": "0.001"}
    with Server(data, extra_env=env) as server:
        yield server, seeded


def new_page(browser, server: Server, username: str | None = None, image_id: int | None = None):
    """A fresh context and page, its script errors collected in ``page.errors``; signed in
    as ``username`` and showing ``image_id`` when given."""
    ctx, page = open_page(browser)
    if username is not None:
        login(page, server, username)
    if image_id is not None:
        open_image(page, image_id)
    return ctx, page


def login(page, server: Server, username: str) -> None:
    sign_in(page, server, username, wait_for=".pb-app")
    # Signed in once the landing queue answered: a photo is drawn, or (say, the fraud queue's
    # only photo is leased to someone else) the queue was empty.
    page.wait_for_selector(".pb-app")
    page.wait_for_function(
        "() => window.__pb.queue !== null || !!document.querySelector('.pb-app[data-drawn]')"
    )


def wait_db(fn: Callable[[], object], timeout: float = 10.0, what: str = "database state"):
    return poll(fn, what, timeout=timeout)


def image_row(image_id: int):
    from db.models import Image
    from db.session import session_scope

    with session_scope() as s:
        return s.get(Image, image_id)


SIDE_NOTE = "front_left_door appears more than once on this photo: check which side each one is"


def _note_side_conflict(prediction_id: int) -> None:
    from db.models import Prediction
    from db.session import session_scope

    with session_scope() as s:
        s.get(Prediction, prediction_id).extra = {"side_conflict": SIDE_NOTE}


def _note_part(prediction_id: int, part: str) -> int:
    """Mark a damage prediction as sitting on ``part`` (what damage_seg's part locator stores);
    the part's class id back."""
    from core.taxonomy import default_taxonomy
    from db.models import Prediction
    from db.session import session_scope

    cls = default_taxonomy().get(part)
    with session_scope() as s:
        s.get(Prediction, prediction_id).extra = {
            "part": {"class_id": cls.id, "name": cls.name, "share": 0.9}
        }
    return cls.id


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_login_open_accept_prediction_drag_vertex(browser, world) -> None:
    server, seeded = world
    img, pred = seeded.image_ids[0], seeded.prediction_ids[0]
    _note_side_conflict(seeded.prediction_ids[2])
    door = _note_part(pred, "front_left_door")
    ctx, page = new_page(browser, server)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    login(page, server, "annotator1")
    open_image(page, img)
    assert page.locator(f'.pb-pred[data-pid="{pred}"]').count() == 1
    assert any(f"/api/images/{img}/file" in u for u in urls)
    assert not [u for u in urls if "token=" in u]  # the bearer token never travels in a URL
    assert page.locator(".pb-pred-label").first.text_content().endswith("0.92")
    # part_seg's note on a sided class found twice: beside the class, the sentence on hover
    side = page.locator(f'.pb-pred-row[data-pid="{seeded.prediction_ids[2]}"] span')
    assert side.text_content().endswith("0.35 · side? ")
    assert side.get_attribute("title") == SIDE_NOTE
    # a damage says which part it sits on, in the list, on the canvas and on its card
    row = page.locator(f'.pb-pred-row[data-pid="{pred}"] span')
    assert row.text_content() == "Damage (unspecified) on front left door 0.92 "
    assert page.locator(f'.pb-pred-label[data-pid="{pred}"]').text_content() == (
        "Damage (unspecified) on front left door 0.92"
    )
    row.click()
    assert (
        "Prediction: Damage (unspecified) on front left door (damage)"
        in page.locator(".pb-sel-pred").text_content()
    )
    shot(page, "01_workspace_with_predictions")
    page.locator(f'.pb-pred-row[data-pid="{pred}"] .pb-pred-accept').click()
    anns = wait_db(lambda: live_annotations(img), what="accepted prediction saved")
    assert anns[0]["prediction_id"] == pred and anns[0]["source"] == "accepted_prediction"
    # accepting keeps the part, as the label's part_id
    assert anns[0]["attributes"] == {"part_id": door}
    assert page.locator(f'.pb-pred[data-pid="{pred}"]').count() == 0  # no longer pending
    assert page.locator(".pb-ann").count() == 1
    # drag the first vertex (100, 100) to the image point under (screen + 40, + 30)
    sx, sy = to_screen(page, 100, 100)
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move(sx + 20, sy + 15, steps=4)
    page.mouse.move(sx + 40, sy + 30, steps=4)
    page.mouse.up()
    target = page.evaluate(
        """([x, y]) => { const svg = document.querySelector('.pb-svg'); const p = svg.createSVGPoint();
        p.x = x; p.y = y; const q = p.matrixTransform(svg.getScreenCTM().inverse()); return [q.x, q.y]; }""",
        [sx + 40, sy + 30],
    )

    def moved():
        ext = live_annotations(img)[0]["geometry"][0]["exterior"]
        return any(abs(p[0] - target[0]) < 1.5 and abs(p[1] - target[1]) < 1.5 for p in ext) and ext

    ext = wait_db(moved, what="dragged vertex saved")
    assert [100, 100] not in ext and len(ext) == 4
    assert image_row(img).status.value == "in_progress"
    shot(page, "02_vertex_dragged")
    assert not page.errors
    ctx.close()


def test_box_prompt_change_class_flag_fake(browser, world) -> None:
    server, seeded = world
    img = seeded.image_ids[3]  # a synthetic 640x480 photo
    ctx, page = new_page(browser, server, "fraud_analyst1", img)
    page.keyboard.press("a")
    x0, y0 = to_screen(page, 96, 150)
    x1, y1 = to_screen(page, 544, 330)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()
    page.wait_for_selector(".pb-preview")
    shot(page, "03_assist_box_preview")
    page.keyboard.press("Enter")
    anns = wait_db(lambda: live_annotations(img), what="assisted polygon saved")
    assert anns[0]["source"] == "assisted" and len(anns[0]["geometry"][0]["exterior"]) >= 3
    # type-to-search picks the class for new polygons; the selected one changes only in its card
    page.fill(".pb-class-search", "scra")
    assert page.locator(".pb-classlist .pb-class-btn").first.text_content() == "Scratch · damage"
    page.press(".pb-class-search", "Enter")
    assert page.evaluate("window.__pb.currentClass") == 2
    page.select_option(".pb-sel-class-pick", "2")
    wait_db(lambda: live_annotations(img)[0]["class_id"] == 2, what="class changed to scratch")
    # a class name with a script tag shows as text and never runs
    page.fill(".pb-class-search", "scuff")
    assert (
        page.locator(".pb-classlist .pb-class-btn").first.text_content() == XSS_NAME + " · damage"
    )
    page.fill(".pb-class-search", "")
    # flag it as fake damage with a note containing a script
    page.check(".pb-fake-check")
    wait_db(
        lambda: live_annotations(img)[0]["attributes"].get("fake") is True, what="fake flag saved"
    )
    note = "<script>window.__xss=2</script> same scratch as claim 118"
    page.fill(".pb-fake-note", note)
    page.locator(".pb-fake-note").blur()
    wait_db(
        lambda: live_annotations(img)[0]["attributes"].get("fake_note") == note,
        what="fake note saved",
    )
    assert page.evaluate("window.__xss") is None
    assert page.locator(".pb-fake-note").input_value() == note
    shot(page, "04_fake_flag")
    assert not page.errors
    ctx.close()


def test_undo_redo_and_reload_restores(browser, world) -> None:
    server, seeded = world
    img = seeded.image_ids[4]
    ctx, page = new_page(browser, server, "annotator1", img)
    draw(page, [(200, 200), (300, 200), (300, 300), (200, 300)])
    first = wait_db(lambda: live_annotations(img), what="drawn polygon saved")[0]["geometry"]
    # move the polygon by dragging its inside
    cx, cy = to_screen(page, 250, 250)
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 30, cy, steps=5)
    page.mouse.up()
    moved = wait_db(
        lambda: (a := live_annotations(img)) and a[0]["geometry"] != first and a[0]["geometry"],
        what="move saved",
    )
    # Alt-click a vertex deletes it
    vx, vy = to_screen(page, moved[0]["exterior"][0][0], moved[0]["exterior"][0][1])
    page.keyboard.down("Alt")
    page.mouse.click(vx, vy)
    page.keyboard.up("Alt")
    wait_db(
        lambda: len(live_annotations(img)[0]["geometry"][0]["exterior"]) == 3, what="vertex deleted"
    )
    page.keyboard.press("Control+z")
    wait_db(lambda: live_annotations(img)[0]["geometry"] == moved, what="undo of vertex delete")
    page.keyboard.press("Control+z")
    wait_db(lambda: live_annotations(img)[0]["geometry"] == first, what="undo of move")
    page.keyboard.press("Control+z")
    wait_db(lambda: live_annotations(img) == [], what="undo of draw")
    page.keyboard.press("Control+Shift+z")
    wait_db(lambda: (a := live_annotations(img)) and a[0]["geometry"] == first, what="redo draw")
    page.keyboard.press("Control+Shift+z")
    wait_db(lambda: (a := live_annotations(img)) and a[0]["geometry"] == moved, what="redo move")
    page.wait_for_function("() => !window.__pb.saving")
    before = live_annotations(img)
    page.reload()
    page.wait_for_selector(f'.pb-app[data-drawn="{img}"]')
    assert page.evaluate("window.__pb.anns.map(a => a.geometry)") == [a["geometry"] for a in before]
    assert page.locator(".pb-ann").count() == len(before) == 1
    assert page.evaluate("window.__pb.image.version") == image_row(img).annotation_version
    shot(page, "05_after_reload")
    # the undo history survived the reload too
    page.keyboard.press("Control+z")
    wait_db(lambda: live_annotations(img)[0]["geometry"] == first, what="undo after reload")
    page.keyboard.press("Control+Shift+z")
    wait_db(lambda: live_annotations(img)[0]["geometry"] == moved, what="redo after reload")
    assert not page.errors
    ctx.close()


def test_two_editors_second_save_gets_conflict(browser, world) -> None:
    server, seeded = world
    img = seeded.image_ids[5]
    ctx_a, a = new_page(browser, server)
    ctx_b, b = new_page(browser, server)
    login(a, server, "annotator1")
    login(b, server, "lead1")
    open_image(a, img)
    open_image(b, img)

    draw(a, [(50, 50), (150, 50), (100, 120)])
    wait_db(lambda: len(live_annotations(img)) == 1, what="first editor's save")
    draw(b, [(400, 300), (500, 300), (450, 400)])
    b.wait_for_selector(".pb-conflict:not([hidden])")
    text = b.locator(".pb-conflict").inner_text()
    assert "Conflict" in text and "saved by someone else" in text
    assert (
        b.locator(".pb-conflict-mine li").count() == 1
        and b.locator(".pb-conflict-theirs li").count() == 1
    )
    shot(b, "06_conflict")
    anns = live_annotations(img)
    assert len(anns) == 1 and anns[0]["geometry"][0]["exterior"][0] == [50, 50]
    assert image_row(img).annotation_version == 1
    ctx_a.close()
    ctx_b.close()


def test_reviewer_rejects_with_comment(browser, world) -> None:
    from db.session import session_scope
    from services.labelling.statuses import set_status

    server, seeded = world
    img = seeded.image_ids[6]
    with session_scope() as s:
        set_status(s, image_id=img, status="labelled", author="annotator1")
    ctx, page = new_page(browser, server, "reviewer1")
    page.select_option(".pb-mode", "review")
    page.wait_for_selector(f'.pb-app[data-drawn="{img}"]')
    page.click(".pb-reject")  # without a comment: refused
    page.wait_for_selector(".pb-msg.pb-bad")
    assert image_row(img).status.value == "labelled"
    page.fill(".pb-reject-comment", "the <b>rear</b> dent is missing")
    page.click(".pb-reject")
    row = wait_db(
        lambda: (r := image_row(img)).status.value == "rejected" and r, what="rejection saved"
    )
    assert row.review_comment == "the <b>rear</b> dent is missing"
    page.wait_for_selector(".pb-review-comment:has-text('rear')")
    assert page.locator(".pb-review-comment b").count() == 0
    shot(page, "07_review_rejected")
    ctx.close()


def test_annotator_cannot_see_dashboard_but_lead_can(browser, world) -> None:
    server, seeded = world
    ctx, page = new_page(browser, server, "annotator1")
    assert page.get_by_role("tab", name="Dashboard").count() == 0
    assert page.locator(".pb-mode option").all_text_contents() == ["Annotate"]
    status = page.evaluate(
        """t => fetch('/api/stats', {headers: {Authorization: 'Bearer ' + t}}).then(r => r.status)""",
        page.evaluate("window.__pb.session.token"),
    )
    assert status == 403
    shot(page, "08_annotator_no_dashboard")
    ctx.close()
    ctx, page = new_page(browser, server, "lead1")
    page.get_by_role("tab", name="Dashboard").click()
    page.wait_for_selector("#pb-dash-summary:has-text('photos')")
    summary = page.locator("#pb-dash-summary").inner_text()
    from sqlmodel import func, select

    from db.models import Image
    from db.session import session_scope

    with session_scope() as s:
        n = s.exec(select(func.count()).select_from(Image)).one()
    assert re.search(rf"\b{n}\b photos", summary)
    page.wait_for_selector("#pb-dash-models:has-text('albert-v1')")
    page.get_by_role("button", name="Export COCO").click()
    page.wait_for_selector('[aria-label="default-coco.json"]')
    assert page.locator("a.download-link").count() >= 1
    shot(page, "09_lead_dashboard")
    ctx.close()


def test_holes_parts_edge_vertex_and_overlay_controls(browser, world) -> None:
    server, seeded = world
    img = seeded.image_ids[7]
    ctx, page = new_page(browser, server, "lead1", img)

    draw(page, [(100, 100), (300, 100), (300, 300), (100, 300)])
    wait_db(lambda: live_annotations(img), what="outer polygon")
    draw(page, [(150, 150), (250, 150), (250, 250), (150, 250)], "h")
    wait_db(
        lambda: (a := live_annotations(img)) and len(a[0]["geometry"][0]["holes"]) == 1,
        what="hole saved",
    )
    draw(page, [(400, 100), (500, 100), (450, 200)], "m")
    geom = wait_db(
        lambda: (a := live_annotations(img)) and len(a[0]["geometry"]) == 2 and a[0]["geometry"],
        what="second part",
    )
    assert geom[0]["holes"][0][0] == [150, 150] and geom[1]["exterior"][2] == [450, 200]
    # The database has the part before the browser has its answer, which redraws the shapes:
    # a click during that redraw can land on an element being replaced. Click once it is in.
    page.wait_for_function("() => !window.__pb.saving && !window.__pb.dirty")
    # click on the middle of the top edge: a vertex appears there
    page.mouse.click(*to_screen(page, 200, 100))
    wait_db(
        lambda: len(live_annotations(img)[0]["geometry"][0]["exterior"]) == 5,
        what="vertex added on edge",
    )
    ext = live_annotations(img)[0]["geometry"][0]["exterior"]
    assert any(abs(p[0] - 200) < 2 and abs(p[1] - 100) < 2 for p in ext)
    # Delete removes the selected vertex, then (nothing selected) Delete removes the polygon
    page.keyboard.press("Delete")
    wait_db(
        lambda: len(live_annotations(img)[0]["geometry"][0]["exterior"]) == 4, what="vertex deleted"
    )
    shot(page, "10_hole_and_parts")
    page.keyboard.press("Escape")
    page.mouse.click(*to_screen(page, 120, 280))  # inside the outer ring, outside the hole
    page.keyboard.press("Delete")
    wait_db(lambda: live_annotations(img) == [], what="polygon deleted")
    page.keyboard.press("Control+z")
    wait_db(lambda: len(live_annotations(img)) == 1, what="polygon restored by undo")
    # group visibility: hiding damage hides its polygons, showing brings them back
    page.keyboard.press("Shift+Digit1")
    assert page.locator(".pb-ann").count() == 0
    page.keyboard.press("Shift+Digit1")
    assert page.locator(".pb-ann").count() == 1
    # the help panel lists every shortcut
    page.keyboard.press("?")
    assert page.locator(".pb-help-table tr").count() >= 20
    assert not page.errors
    ctx.close()


def test_accept_all_above_threshold_and_fraud_queue(browser, world) -> None:
    from sqlmodel import select

    from db.models import Prediction
    from db.session import session_scope

    server, seeded = world
    img = seeded.image_ids[
        0
    ]  # the photo with predictions (0.92 accepted by the first test, 0.81 fake, 0.35)
    ctx, page = new_page(browser, server, "fraud_analyst1")
    page.select_option(".pb-mode", "fraud")
    page.wait_for_function("window.__pb.queue !== null")
    page.wait_for_selector(f'.pb-app[data-drawn="{img}"]')
    from services.labelling.images import queue_ids

    with session_scope() as s:
        flagged = queue_ids(s, 1, flagged=True, status="new,in_progress,labelled,reviewed,rejected")
    assert img in flagged and len(flagged) < len(seeded.image_ids)
    assert page.evaluate("window.__pb.queue.queue_length") == len(flagged)
    page.fill(".pb-thr", "0.5")
    page.click(".pb-accept-all")
    wait_db(
        lambda: any(a["class_id"] == 27 for a in live_annotations(img)),
        what="fake prediction accepted",
    )
    with session_scope() as s:
        states = {
            p.score: p.state.value
            for p in s.exec(select(Prediction).where(Prediction.image_id == img))
        }
    assert states[0.81] == "accepted" and states[0.35] == "pending"
    page.click(".pb-fraud-confirm")
    wait_db(
        lambda: all(
            a["attributes"].get("fake") for a in live_annotations(img) if a["group"] == "fake"
        ),
        what="fake confirmed",
    )
    shot(page, "11_fraud_queue")
    ctx.close()
