"""Two annotators in two browsers get two different photos; a photo the other one holds opens
read-only with their name, and becomes editable once they move on."""

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

pytestmark = pytest.mark.browser
sync_api = require_chromium()


def _login(browser, server: Server, username: str):
    return signed_in_page(browser, server, username, viewport=(1400, 900), timeout_ms=30000)


def _drawn(page) -> int:
    return int(page.get_attribute(".pb-app", "data-drawn"))


def test_two_annotators_get_different_photos_and_a_held_one_is_read_only(tmp_path) -> None:
    from db.session import session_scope
    from services.accounts.users import create_user

    data = tmp_path / "data"
    seeded = seed_workspace(data, n_synthetic=6, n_predictions=0)
    with session_scope() as session:
        create_user(session, username="ana", password=PASSWORD, role="annotator")
    with Server(data) as server:
        with launch(sync_api) as browser:
            ctx_a, a = _login(browser, server, "ana")
            ctx_b, b = _login(browser, server, seeded.users["annotator"])
            assert _drawn(a) != _drawn(b)
            # Both press "next" at once: still two different photos.
            for page in (a, b):
                page.evaluate("() => { delete document.querySelector('.pb-app').dataset.drawn; }")
            for page in (a, b):
                page.evaluate("() => { window.__pb.step('next'); }")
            for page in (a, b):
                page.wait_for_selector(".pb-app[data-drawn]")
            held_by_ana = _drawn(a)
            assert held_by_ana != _drawn(b)

            # B opens Ana's photo by id: read-only, with her name; nothing is saved.
            b.evaluate(f"() => window.__pb.openImage({held_by_ana})")
            b.wait_for_selector(f".pb-app[data-drawn='{held_by_ana}'][data-read-only]")
            bar = b.locator(".pb-held")
            assert bar.is_visible()
            assert "ana is working on this photo" in bar.inner_text()
            SHOTS.mkdir(parents=True, exist_ok=True)
            b.screenshot(path=str(SHOTS / "lease_read_only.png"))
            assert b.evaluate("() => window.__pb.image.readOnly") is True
            token = b.evaluate("() => window.__pb.session.token")
            detail = httpx.get(
                f"{server.url}/api/images/{held_by_ana}",
                headers={"Authorization": f"Bearer {token}"},
            ).json()
            assert detail["read_only"] is True and detail["held_by"] == "ana"
            assert detail["version"] == 0

            # Ana moves on: the photo is hers no longer, and opens editable for B.
            a.evaluate("() => { window.__pb.step('next'); }")
            a.wait_for_function(
                f"() => window.__pb.image && window.__pb.image.id !== {held_by_ana}"
            )
            b.evaluate(f"() => window.__pb.openImage({held_by_ana})")
            b.wait_for_function("() => window.__pb.image && !window.__pb.image.readOnly")
            assert b.locator(".pb-held").is_hidden()
            assert b.get_attribute(".pb-app", "data-read-only") is None
            assert a.errors == [] and b.errors == []  # type: ignore[attr-defined]
            ctx_a.close()
            ctx_b.close()
