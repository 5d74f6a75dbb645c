"""End-to-end, headless Chromium: the lead's dashboard shows its plots with a CSV of each,
a readable version table with promote and roll back, and an empty fraud queue says so and
clears the canvas. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from browser_helpers import (
    SHOTS,
    Seeded,
    Server,
    model_version,
    require_chromium,
    seed_workspace,
    signed_in_page,
)

pytestmark = pytest.mark.browser
SQUARE = [
    {"exterior": [[100.0, 100.0], [220.0, 100.0], [220.0, 200.0], [100.0, 200.0]], "holes": []}
]
PLOTS = ("pace", "classes", "versions", "learning_curve", "effort")

require_chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Server, Seeded]]:
    """Six photos, four labelled by ana, the last two after yolo_seg-v2 pre-annotated them;
    three yolo_seg versions measured on the held-out split, v2 promoted; no fake-damage flag
    anywhere."""
    from db.models import ImagePrediction, Prediction
    from db.session import session_scope
    from services.labelling.saves import save_annotations
    from services.labelling.statuses import set_status

    data = tmp_path_factory.mktemp("dashboard") / "data"
    seeded = seed_workspace(data, n_synthetic=6, n_predictions=0)
    with session_scope() as s:
        versions = {}
        for v, ap, n in ((1, 0.12, 40), (2, 0.31, 80), (3, 0.27, 120)):
            figures = {"coco": {"AP50": ap, "AP": ap / 2}, "macro_f1": ap + 0.1, "recall": 0.3}
            metrics = {
                "holdout": {"part": figures},
                "promotion": {"promoted": v == 2, "reason": f"rule verdict for v{v}"},
            }
            versions[v] = model_version(
                "yolo_seg", v, metrics, promoted=v == 2, train_snapshot={"count": n}
            )
            s.add(versions[v])
        s.flush()
        # v2 pre-annotated photos 3 and 4 before ana labelled them: the second round of
        # the effort plot, its square shown as it is
        for image_id, (class_id, group) in zip(
            seeded.image_ids[2:4], ((40, "part"), (3, "damage")), strict=True
        ):
            s.add(ImagePrediction(image_id=image_id, model_version_id=versions[2].id))
            s.add(
                Prediction(
                    image_id=image_id,
                    model_version_id=versions[2].id,
                    class_id=class_id,
                    group=group,
                    geometry=SQUARE,
                    score=0.9,
                )
            )
    with session_scope() as s:
        for i, image_id in enumerate(seeded.image_ids[:4]):
            ann = {"class_id": 3 if i % 2 else 40, "geometry": SQUARE}
            save_annotations(
                s, image_id=image_id, expected_version=0, annotations=[ann], author="ana"
            )
            set_status(s, image_id=image_id, status="labelled", author="ana")
    with Server(data) as server:
        yield server, seeded


def _page(browser, server: Server, username: str):
    ctx, page = signed_in_page(
        browser, server, username, wait_for=".pb-app", timeout_ms=30000, accept_downloads=True
    )
    return ctx, page, page.errors


def _promoted(stage: str) -> str | None:
    from db.session import session_scope
    from services.training.registry import current

    with session_scope() as s:
        mv = current(s, stage)
        return mv.name if mv else None


def test_dashboard_plots_csv_versions_and_the_empty_fraud_queue(world, browser) -> None:
    server, _ = world
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx, page, errors = _page(browser, server, "lead1")
    page.get_by_role("tab", name="Dashboard").click()
    # where each self-training model stands, the part pre-annotator first
    page.wait_for_function(
        "() => document.querySelector('#pb-dash-summary').innerText.includes('part_seg')"
    )
    summary = page.locator("#pb-dash-summary").inner_text()
    assert (
        "Part pre-annotator (part_seg) auto-training: 2 labelled photos with parts, next training "
        "at 50" in summary
    ), summary
    assert summary.index("Part pre-annotator") < summary.index("Assist net"), summary
    page.locator("#pb-dash-summary").screenshot(path=str(SHOTS / "dashboard_summary.png"))
    # what a photo costs now, against round 0 (no model): the accepted square costs 1 action
    page.wait_for_function(
        "() => document.querySelector('#pb-dash-model-state').innerText.includes('Each photo')"
    )
    state = page.locator("#pb-dash-model-state").inner_text()
    assert "Each photo now costs 1 action, down from " in state, state
    assert "in round 0 (no model). Counted on 2 photos of round 1 (yolo_seg-v2)" in state, state
    # the five plots, drawn as pictures, each with a CSV of its numbers
    for name in PLOTS:
        img = page.locator(f"#pb-plot-{name}-img img")
        img.wait_for(timeout=60000)
        assert page.evaluate("el => el.complete && el.naturalWidth > 300", img.element_handle()), (
            name
        )
    with page.expect_download() as dl:
        page.click("#pb-plot-versions-csv")
    rows = list(csv.reader(io.StringIO(dl.value.path().read_text())))
    assert rows[0] == ["stage", "version", "number", "metric", "value", "promoted"]
    assert ["yolo_seg", "yolo_seg-v2", "2", "holdout.part.coco.AP50", "0.31", "yes"] in rows
    with page.expect_download() as dl:
        page.click("#pb-plot-pace-csv")
    # 4 photos labelled by the team on one day, none imported labelled
    assert dl.value.path().read_text().splitlines()[1].endswith(",4,0,4")
    # the version table: every cell shows all its text (wrapped, never cut off)
    page.wait_for_function(
        "() => document.querySelector('#pb-dash-models').innerText.includes('verdict for v3')"
    )
    cut = page.evaluate(
        """() => [...document.querySelectorAll('#pb-dash-models td')]
             .filter((td) => td.innerText.trim() && td.scrollWidth > td.clientWidth + 1)
             .map((td) => td.innerText)"""
    )
    assert cut == []
    page.locator("#pb-dash-plots").screenshot(path=str(SHOTS / "dashboard_plots.png"))
    page.locator("#pb-dash-model-state").screenshot(
        path=str(SHOTS / "dashboard_effort_sentence.png")
    )
    page.locator("#pb-plot-effort").screenshot(path=str(SHOTS / "dashboard_effort.png"))
    page.locator("#pb-dash-versions").screenshot(path=str(SHOTS / "dashboard_versions.png"))
    # promote by hand, then roll back to the parent-less previous version
    page.locator("#pb-version-pick input").fill("yolo_seg-v3")
    page.keyboard.press("Enter")
    page.click("#pb-version-promote")
    page.locator("#pb-version-msg").get_by_text("is now the promoted yolo_seg").wait_for()
    assert _promoted("yolo_seg") == "yolo_seg-v3"
    page.click("#pb-version-rollback")
    page.locator("#pb-version-msg").get_by_text("Rolled back").wait_for()
    assert _promoted("yolo_seg") == "yolo_seg-v2"
    assert errors == []
    ctx.close()

    # the fraud analyst's queue is empty: it says so at the top and shows no photo
    ctx, page, errors = _page(browser, server, "fraud_analyst1")
    page.select_option(".pb-mode", "fraud")
    page.wait_for_selector('.pb-app[data-empty="fraud"]')
    assert page.locator(".pb-progress").inner_text().startswith("The fraud queue is empty")
    empty = page.locator(".pb-empty")
    assert empty.is_visible() and "The fraud queue is empty" in empty.inner_text()
    assert page.locator(".pb-img").get_attribute("href") is None
    assert page.locator(".pb-l-anns > *").count() == 0
    page.screenshot(path=str(SHOTS / "fraud_queue_empty.png"))
    assert errors == []
    ctx.close()
