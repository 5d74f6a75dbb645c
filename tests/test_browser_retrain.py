"""The lead dashboard's "Start retraining" button runs a real round in a real worker, and the
dashboard shows the job's progress until it completes."""

from __future__ import annotations

import json
import time

import pytest
from browser_helpers import CHROMIUM_ARGS, PASSWORD, Server, chromium_path, require_chromium
from conftest import REPO_ROOT, requires_datasets

pytestmark = [pytest.mark.browser, requires_datasets, pytest.mark.timeout(400)]

sync_api = require_chromium()


def _labelled_photos(datasets_dir, tmp_path) -> None:
    """Eight dsmlr photos with their part polygons, five of them marked labelled."""
    from sqlmodel import select

    from core.records import load_label_map
    from db.models import Image, Role
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import create_user
    from services.data_io.imports import import_coco
    from services.labelling.statuses import set_status

    root = datasets_dir / "car_parts_dsmlr" / "trainingset"
    data = json.loads((root / "annotations.json").read_text())
    keep = data["images"][:8]
    ids = {im["id"] for im in keep}
    sub = {
        **data,
        "images": keep,
        "annotations": [a for a in data["annotations"] if a["image_id"] in ids],
    }
    (tmp_path / "sub.json").write_text(json.dumps(sub))
    with session_scope() as s:
        project = get_or_create_project(s)
        import_coco(
            s,
            project,
            tmp_path / "sub.json",
            images_dir=root / "JPEGImages",
            label_map=load_label_map(REPO_ROOT / "tests" / "data" / "dsmlr_map.json"),
            status="new",  # five set labelled below, the others left to label
        )
        for im in s.exec(select(Image).order_by(Image.id)).all()[:5]:
            set_status(s, image_id=im.id, status="labelled", author="t")
        create_user(s, username="lead1", password=PASSWORD, role=Role.lead)


def test_retrain_button_starts_a_round_and_shows_its_progress(store, datasets_dir, tmp_path):
    from core.config import get_settings
    from db.models import Job, JobStatus
    from db.session import session_scope
    from jobs.worker import start_worker_process

    _labelled_photos(datasets_dir, tmp_path)
    server = Server(store)
    worker = start_worker_process(get_settings(), max_delay=0.2, log_file=tmp_path / "worker.log")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.set_default_timeout(30000)
            page.goto(server.url + "/ui/")
            page.fill("#pb-login-user textarea, #pb-login-user input", "lead1")
            page.fill("#pb-login-password input", PASSWORD)
            page.click("#pb-login-button")
            page.get_by_role("tab", name="Dashboard").click()
            # the lead picks what the round trains
            page.locator("#pb-retrain-stages").get_by_label("YOLO parts").check()
            page.click("#pb-retrain")
            page.wait_for_selector("#pb-retrain-msg:has-text('queued as job')")
            # it says what the round will really train
            said = page.locator("#pb-retrain-msg").inner_text()
            assert "It will train yolo_seg: tiny preset, no promoted version to continue" in said
            with session_scope() as s:
                job = s.exec(__import__("sqlmodel").select(Job).where(Job.kind == "round")).one()
                job_id = job.id
                assert job.params["stages"] == ["yolo_seg"] and job.params["config"] == "tiny"
            # The live table shows the round's stage and progress while it runs, then completion.
            seen_running = False
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                table = page.locator("#pb-dash-jobs").inner_text()
                if "running" in table:
                    seen_running = True
                if "completed" in table or "failed" in table:
                    break
                time.sleep(0.5)
            page.screenshot(
                path=str(REPO_ROOT / "artifacts" / "screenshots" / "10_retrain_progress.png")
            )
            browser.close()
        with session_scope() as s:
            job = s.get(Job, job_id)
            assert job.status == JobStatus.completed, f"round ended {job.status}: {job.error}"
            assert job.progress == pytest.approx(1.0)
        assert seen_running, "the dashboard never showed the round running"
        assert "completed" in table
    finally:
        worker.terminate()
        worker.wait(10)
        server.stop()
