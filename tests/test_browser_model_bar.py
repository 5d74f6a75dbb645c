"""End-to-end, headless Chromium: the dashboard lists a version below the
bar to pre-annotate with its sentence, promoting it needs the confirmation box, and its
predictions never reach the workspace until then; a failed job shows one sentence in the jobs
table, with the full error behind its details. Screenshots go to artifacts/screenshots/."""

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
from conftest import REPO_ROOT

pytestmark = pytest.mark.browser
SHOTS = REPO_ROOT / "artifacts" / "screenshots"
SQUARE = [{"exterior": [[100, 100], [220, 100], [220, 200], [100, 200]], "holes": []}]
LONG = "the held-out split has no labelled photos of class rear_bumper " * 6

sync_api = require_chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Server, Seeded, dict[str, int]]]:
    """Two photos; yolo_seg-v1 (AP50 0.45, one class at 0.05) promoted with one pending prediction on the first,
    yolo_seg-v2 (AP50 0.00, below the bar) kept with one written before the bar existed; a
    failed job whose error is a long domain error over two lines."""
    from db.models import Job, JobStatus, ModelVersion, Prediction
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project

    data = tmp_path_factory.mktemp("model_bar") / "data"
    seeded = seed_workspace(data, n_synthetic=2, n_predictions=0)
    ids: dict[str, int] = {}
    with session_scope() as s:
        for v, ap, reason in (
            (1, 0.45, "yolo_seg-v1 is the stage's first version"),
            (
                2,
                0.0,
                "trained, below the bar to pre-annotate: AP50 0.00 < 0.20; kept unpromoted "
                "(a lead may promote it by hand)",
            ),
        ):
            # v1 clears the bar as a whole, but not on one class
            per_class = {"per_class_AP50": {"41": 0.6, "45": 0.05}} if v == 1 else {}
            mv = ModelVersion(
                stage="yolo_seg",
                version=v,
                name=f"yolo_seg-v{v}",
                path="-",
                sha256="0",
                promoted=v == 1,
                metrics={
                    "holdout": {"part": {"coco": {"AP50": ap, "AP": ap / 2, **per_class}}},
                    "promotion": {"promoted": v == 1, "reason": reason},
                },
            )
            s.add(mv)
            s.flush()
            pred = Prediction(
                image_id=seeded.image_ids[0],
                model_version_id=mv.id,
                class_id=40 + v,
                group="part",
                geometry=SQUARE,
                score=0.9 - v / 10,
            )
            s.add(pred)
            s.flush()
            ids[f"v{v}"] = pred.id
        job = Job(
            project_id=get_or_create_project(s).id,
            kind="train",
            status=JobStatus.failed,
            params={"stage": "yolo_seg"},
            error=f"Invalid: {LONG}\nsecond line of the error",
        )
        s.add(job)
        s.flush()
        ids["job"] = job.id
    server = Server(data)
    yield server, seeded, ids
    server.stop()


def _page(browser, server: Server, username: str):
    ctx, page = open_page(browser, timeout_ms=30000)
    login(page, server, username, wait_for=".pb-app")
    return ctx, page, page.errors


def _pred_ids(page) -> set[int]:
    return {
        int(p)
        for p in page.evaluate(
            "() => [...document.querySelectorAll('.pb-pred-row')].map(e => e.dataset.pid)"
        )
    }


def test_a_version_below_the_bar_is_listed_needs_the_box_and_stays_out_of_the_workspace(
    world,
) -> None:
    server, seeded, ids = world
    SHOTS.mkdir(parents=True, exist_ok=True)
    with launch(sync_api) as browser:
        # the annotator sees v1's suggestion, never v2's
        ctx, page, errors = _page(browser, server, "annotator1")
        open_image(page, seeded.image_ids[0])
        page.wait_for_selector(f'.pb-pred-row[data-pid="{ids["v1"]}"]')
        assert _pred_ids(page) == {ids["v1"]}
        page.screenshot(path=str(SHOTS / "bar_workspace_without_below_bar.png"))
        assert errors == []
        ctx.close()

        ctx, page, errors = _page(browser, server, "lead1")
        page.get_by_role("tab", name="Dashboard").click()
        page.wait_for_function(
            "() => document.querySelector('#pb-dash-models').innerText.includes('yolo_seg-v2')"
        )
        # the model area names the class v1 does not pre-annotate
        state = page.locator("#pb-dash-model-state")
        state.get_by_text("does not pre-annotate 1 class").wait_for()
        assert "(AP50 < 0.20 on held-out photos): Rear right door (0.05)" in state.inner_text()
        state.screenshot(path=str(SHOTS / "bar_withheld_classes.png"))
        table = page.locator("#pb-dash-models").inner_text()
        assert "trained, below the bar to pre-annotate: AP50 0.00 < 0.20" in table, table
        page.locator("#pb-dash-versions").screenshot(path=str(SHOTS / "bar_versions.png"))
        # without the box: refused, with what annotators would see
        page.locator("#pb-version-pick input").fill("yolo_seg-v2")
        page.keyboard.press("Enter")
        page.click("#pb-version-promote")
        msg = page.locator("#pb-version-msg")
        msg.get_by_text("Confirm to promote it anyway").wait_for()
        assert "below the bar to pre-annotate" in msg.inner_text()
        page.locator("#pb-dash-versions").screenshot(path=str(SHOTS / "bar_promote_refused.png"))
        assert _promoted() == "yolo_seg-v1"
        # with the box: promoted
        page.locator("#pb-version-confirm input").check()
        page.click("#pb-version-promote")
        msg.get_by_text("is now the promoted yolo_seg").wait_for()
        assert _promoted() == "yolo_seg-v2"
        page.locator("#pb-dash-versions").screenshot(path=str(SHOTS / "bar_promote_confirmed.png"))
        assert errors == []
        ctx.close()


def test_a_failed_job_is_one_sentence_in_the_table_with_the_error_behind_details(world) -> None:
    from services.dashboard.summary import JOB_SENTENCE_CHARS

    server, _, ids = world
    with launch(sync_api) as browser:
        ctx, page, errors = _page(browser, server, "lead1")
        page.get_by_role("tab", name="Dashboard").click()
        table = page.locator("#pb-dash-jobs")
        page.wait_for_function(
            "() => document.querySelector('#pb-dash-jobs').innerText.includes('failed: ')"
        )
        cells = page.evaluate(
            """() => [...document.querySelectorAll('#pb-dash-jobs td')]
                 .map((td) => td.textContent.replace(/\\s+/g, ' ').trim())"""
        )
        (said,) = [c for c in cells if c.startswith("failed: ")]
        sentence = said.removeprefix("failed: ")
        assert sentence.startswith("the held-out split has no labelled photos"), said
        assert sentence.endswith("…") and len(sentence) <= JOB_SENTENCE_CHARS, sentence
        assert not any("Invalid" in c or "second line" in c for c in cells), cells
        table.screenshot(path=str(SHOTS / "jobs_failed_sentence.png"))
        # the details: the whole error, both lines, class name included
        page.locator("#pb-job-pick input").fill(str(ids["job"]))
        page.click("#pb-job-show")
        info = page.locator("#pb-job-info")
        info.get_by_text("second line of the error").wait_for()
        assert "Invalid: the held-out split" in info.inner_text()
        info.screenshot(path=str(SHOTS / "jobs_failed_details.png"))
        assert errors == []
        ctx.close()


def _promoted() -> str | None:
    from db.session import session_scope
    from services.training.registry import current

    with session_scope() as s:
        mv = current(s, "yolo_seg")
        return mv.name if mv else None
