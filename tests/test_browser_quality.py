"""End-to-end: two annotators label an overlap photo and one a gold photo over HTTP against a
real server; the lead's dashboard shows the agreement row and the gold score."""

from __future__ import annotations

import httpx
import pytest
from browser_helpers import (
    PASSWORD,
    SHOTS,
    Server,
    launch,
    require_chromium,
    seed_workspace,
    signed_in_page,
)
from sqlmodel import select

pytestmark = pytest.mark.browser

sync_api = require_chromium()


def box(x0: float, y0: float, x1: float, y1: float, class_id: int = 1) -> dict:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    return {"class_id": class_id, "geometry": [{"exterior": ring, "holes": []}]}


def test_lead_sees_agreement_row_and_gold_score(tmp_path) -> None:
    from db.models import Image
    from db.session import session_scope
    from services.accounts.users import create_user

    seeded = seed_workspace(tmp_path / "data", n_synthetic=3)
    with session_scope() as session:
        create_user(session, username="annotator2", password=PASSWORD, role="annotator")
    with Server(tmp_path / "data") as server:
        api = httpx.Client(base_url=server.url + "/api", timeout=30)

        def head(name: str) -> dict[str, str]:
            r = api.post("/login", json={"username": name, "password": PASSWORD})
            return {"Authorization": f"Bearer {r.json()['token']}"}

        lead, a1, a2 = head("lead1"), head("annotator1"), head("annotator2")
        r = api.put(
            "/quality/settings", json={"overlap_share": 0.34, "gold_share": 0.5}, headers=lead
        )
        assert r.status_code == 200, r.text
        with session_scope() as session:
            (pid,) = session.exec(select(Image.id).where(Image.overlap_target == 2)).all()
        gid = next(i for i in seeded.image_ids if i != pid)
        for who, shapes in ((a1, [box(100, 100, 200, 200)]), (a2, [box(100, 100, 200, 180)])):
            r = api.put(
                f"/images/{pid}/annotations",
                json={"version": 0, "annotations": shapes},
                headers=who,
            )
            assert r.status_code == 200, r.text
            api.post(f"/images/{pid}/status", json={"status": "labelled"}, headers=who)
        api.put(
            f"/images/{gid}/annotations",
            json={"version": 0, "annotations": [box(50, 50, 150, 150)]},
            headers=lead,
        )
        api.post(f"/images/{gid}/status", json={"status": "reviewed"}, headers=lead)
        assert (
            api.post(f"/quality/gold/{gid}", json={"gold": True}, headers=lead).status_code == 200
        )
        assert api.get(f"/images/{gid}", headers=a1).json()["annotations"] == []
        api.put(
            f"/images/{gid}/annotations",
            json={"version": 0, "annotations": [box(50, 50, 150, 125)]},
            headers=a1,
        )
        api.post(f"/images/{gid}/status", json={"status": "labelled"}, headers=a1)

        with launch(sync_api) as browser:
            _, page = signed_in_page(
                browser, server, "lead1", wait_for=None, viewport=(1400, 1000), timeout_ms=30000
            )
            page.get_by_role("tab", name="Dashboard").click()
            photos = page.locator("#pb-quality-table-photos")
            page.wait_for_selector("#pb-quality-table-photos:has-text('annotator1, annotator2')")
            # one match at IoU 0.8 between two single-instance sets: F1 1, mean IoU 0.8
            assert "0.8" in photos.inner_text() and str(pid) in photos.inner_text()
            gold = page.locator("#pb-quality-table-gold")
            page.wait_for_selector("#pb-quality-table-gold:has-text('annotator1')")
            assert "0.75" in gold.inner_text()  # IoU of the 100x75 box with the 100x100 gold
            annotators = page.locator("#pb-quality-table-annotators").inner_text()
            assert "annotator2" in annotators
            page.wait_for_selector("#pb-quality-plot img", state="attached")
            page.locator("#pb-quality-plot").scroll_into_view_if_needed()
            page.wait_for_function(
                "() => { const i = document.querySelector('#pb-quality-plot img');"
                " return i && i.complete && i.naturalWidth > 0; }"
            )
            page.get_by_role("button", name="Download CSV").click()
            page.wait_for_selector('[aria-label="quality_annotators.csv"]')
            page.locator("#pb-quality").scroll_into_view_if_needed()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.locator("#pb-quality").screenshot(path=str(SHOTS / "14_quality_dashboard.png"))
