"""End-to-end, headless Chromium: a fraud analyst gives a new-damage flag its verdict by
clicking the flag's row in the Inspections tab, with no flag id to type."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_helpers import SHOTS, Seeded, Server, require_chromium, seed_workspace, signed_in_page

pytestmark = pytest.mark.browser
require_chromium()


def _ring(x0: float, y0: float, x1: float, y1: float) -> list[dict]:
    return [{"exterior": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "holes": []}]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Server, Seeded, list[int]]]:
    """A vehicle with a pick-up and a return inspection, each with a front photo; the return
    has two open new-damage flags."""
    from db.models import DamageFlag
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.claims import inspections as svc

    data = tmp_path_factory.mktemp("inspections") / "data"
    seeded = seed_workspace(data, n_synthetic=2, n_predictions=0)
    with session_scope() as s:
        project = get_or_create_project(s)
        v = svc.create_vehicle(s, project, plate="PB-31")
        pick = svc.create_inspection(
            s, project, vehicle_id=v.id, kind="pick_up", name="pick-up", inspected_on="2026-01-02"
        )
        ret = svc.create_inspection(
            s, project, vehicle_id=v.id, kind="return", name="return", inspected_on="2026-01-09"
        )
        svc.assign_photo(s, project, pick.id, seeded.image_ids[0], "front")
        svc.assign_photo(s, project, ret.id, seeded.image_ids[1], "front")
        flags = [
            DamageFlag(
                project_id=project.id,
                inspection_id=ret.id,
                image_id=seeded.image_ids[1],
                source="annotation",
                source_id=k + 1,
                class_id=3,
                geometry=_ring(40 + 120 * k, 40, 120 + 120 * k, 120),
                state="new_since_pick_up",
                best_iou=0.0,
                compared_inspection_id=pick.id,
                alignment={},
            )
            for k in range(2)
        ]
        s.add_all(flags)
        s.flush()
        flag_ids = [f.id for f in flags]
    with Server(data) as server:
        yield server, seeded, flag_ids


def _flag(flag_id: int):
    from db.models import DamageFlag
    from db.session import session_scope

    with session_scope() as s:
        f = s.get(DamageFlag, flag_id)
        return f.decision, f.note, f.decided_by


def test_a_flag_is_decided_by_clicking_its_row(world, browser) -> None:
    server, seeded, (first, second) = world
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx, page = signed_in_page(
        browser, server, seeded.users["fraud_analyst"], wait_for=".pb-app", timeout_ms=30000
    )
    page.get_by_role("tab", name="Inspections").click()
    page.locator("#pb-insp-pick input").click()
    page.get_by_role("option", name="PB-31: return (return, 2026-01-09)").click()
    cell = lambda r, c: page.locator(f"#pb-insp-flags [data-testid='cell-{r}-{c}']")  # noqa: E731
    cell(1, 0).wait_for()
    assert page.locator("#pb-insp-flags [role=gridcell][data-col='0']").count() == 2
    assert [cell(r, 0).inner_text().strip() for r in (0, 1)] == [str(first), str(second)]
    # no id to type: the picked flag is the clicked row's
    assert page.locator("#pb-insp-flag-id").count() == 0
    page.locator("#pb-insp-decide").click()
    page.wait_for_function(
        "() => document.querySelector('#pb-insp-decide-msg').innerText.includes('Click')"
    )
    assert _flag(first)[0] is None and _flag(second)[0] is None

    cell(1, 2).click()
    picked = page.locator("#pb-insp-flag-picked")
    picked.filter(has_text=f"Flag {second} ").wait_for()
    page.locator("#pb-insp-flag-verdict label", has_text="dismissed").click()
    page.locator("#pb-insp-flag-note textarea, #pb-insp-flag-note input").first.fill(
        "scratch was on the pick-up photo's other side"
    )
    page.screenshot(path=str(SHOTS / "claims_flag_row_picked.png"), full_page=True)
    page.locator("#pb-insp-decide").click()
    page.locator("#pb-insp-decide-msg").filter(has_text=f"Flag {second}: dismissed").wait_for()
    assert _flag(second) == (
        "dismissed",
        "scratch was on the pick-up photo's other side",
        seeded.users["fraud_analyst"],
    )
    assert _flag(first)[0] is None  # only the clicked row's flag
    picked.filter(has_text="Click a flag's row").wait_for()  # saved: nothing picked now
    cell(1, 5).filter(has_text="dismissed").wait_for()
    page.screenshot(path=str(SHOTS / "claims_flag_row_decided.png"), full_page=True)
    assert page.errors == []
    ctx.close()
