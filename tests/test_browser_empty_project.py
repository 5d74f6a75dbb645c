"""A project without photos, in headless Chromium against a real server: whoever may import
is told where photos are added; everyone else that a lead or admin adds them.
Set ``PB_SHOTS=<folder>`` to keep screenshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import (
    PASSWORD,
    Server,
    init_data_dir,
    launch,
    login,
    open_page,
    require_chromium,
)

pytestmark = pytest.mark.browser
sync_api = require_chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import create_user

    data = tmp_path_factory.mktemp("empty") / "data"
    init_data_dir(data)
    with session_scope() as s:
        get_or_create_project(s)
        for role in ("admin", "annotator"):
            create_user(s, username=f"{role}1", password=PASSWORD, role=role)
    srv = Server(data)
    yield srv
    srv.stop()


def shot(page, name: str) -> None:
    folder = os.environ.get("PB_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"empty_{name}.png"))


def empty_text(page) -> str:
    # the placeholder says "No photo" until the queue has answered and the canvas says why
    page.wait_for_selector(".pb-app[data-empty]")
    return page.locator(".pb-empty").text_content()


def test_an_admin_is_told_where_to_add_photos(server) -> None:
    with launch(sync_api) as browser:
        ctx, page = open_page(browser, viewport=(1440, 900))
        login(page, server, "admin1", wait_for=None)
        summary = page.locator("#pb-dash-summary")
        page.wait_for_selector("#pb-dash-summary:has-text('no photos yet')")
        assert "Add photos" in summary.inner_text()
        assert "panelbeater import folder DIR" in summary.inner_text()
        assert page.locator("#pb-upload").is_visible()
        # The dashboard's events ran after the session cookie was set, not before.
        page.wait_for_timeout(1000)
        assert page.get_by_text("Sign in first").count() == 0
        shot(page, "admin_dashboard")

        page.get_by_role("tab", name="Workspace").click()
        text = empty_text(page)
        assert "no photos yet" in text and '"Add photos"' in text
        assert "panelbeater import folder" in text and "POST /api/images/upload" in text
        shot(page, "admin_workspace")
        assert page.errors == []
        ctx.close()

        ctx, page = open_page(browser, viewport=(1440, 900))
        login(page, server, "annotator1", wait_for=".pb-app")
        text = empty_text(page)
        assert "no photos yet: a lead or admin adds them" in text
        assert "panelbeater import" not in text
        shot(page, "annotator_workspace")
        assert page.errors == []
        ctx.close()
