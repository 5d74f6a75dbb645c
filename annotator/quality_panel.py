"""The dashboard's quality section: overlap and gold settings, marking gold photos, the
agreement and gold tables, a time series per annotator, and CSV downloads.

Thin: every handler calls ``services.review.quality`` or ``services.review.quality_report``. The caller
passes its ``require(token, permission) -> User`` so this module needs nothing of the app.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder
from PIL import Image as PILImage

from db.models import User
from db.session import session_scope
from services.accounts.projects import served_project
from services.accounts.users import Permission
from services.errors import ServiceError
from services.review import quality as quality_service
from services.review import quality_report as report

Require = Callable[[str, Permission], User]

#: table -> (label, [(column, heading)])
TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "annotators": (
        "Per annotator",
        [
            ("annotator", "annotator"),
            ("photos_per_hour", "photos/h"),
            ("agreement_f1", "agreement F1"),
            ("agreement_mean_iou", "agreement IoU"),
            ("label_disagreements", "label disagreements"),
            ("gold_photos", "gold photos"),
            ("gold_precision", "gold precision"),
            ("gold_recall", "gold recall"),
            ("gold_mean_iou", "gold IoU"),
            ("rejection_rate", "rejected in review"),
        ],
    ),
    "photos": (
        "Agreement per overlap photo (lowest first: reviewed first)",
        [
            ("image_id", "photo"),
            ("file_name", "file"),
            ("status", "status"),
            ("annotators", "annotators"),
            ("agreement_f1", "agreement F1"),
            ("mean_iou", "mean IoU"),
            ("label_disagreements", "label disagreements"),
        ],
    ),
    "classes": (
        "Per class",
        [
            ("class", "class"),
            ("agreement_f1", "agreement F1"),
            ("agreement_mean_iou", "agreement IoU"),
            ("label_disagreements", "label disagreements"),
            ("gold_precision", "gold precision"),
            ("gold_recall", "gold recall"),
            ("gold_mean_iou", "gold IoU"),
        ],
    ),
    "gold": (
        "Gold submissions",
        [
            ("annotator", "annotator"),
            ("image_id", "photo"),
            ("file_name", "file"),
            ("submitted_at", "submitted"),
            ("precision", "precision"),
            ("recall", "recall"),
            ("mean_iou", "mean IoU"),
        ],
    ),
}
SETTINGS = (
    "overlap_share",
    "overlap_annotators",
    "gold_share",
    "gold_feedback",
    "iou_threshold",
    "quorum",
    "low_agreement",
)


def _cell(v: Any) -> Any:
    return "" if v is None else v


def refresh(require: Require, token: str) -> list[Any]:
    """Settings fields, the four tables and the time-series picture."""
    user = require(token, Permission.dashboard)
    with session_scope() as session:
        project = served_project(session, user)
        settings = quality_service.project_quality_settings(project).as_dict()
        tables = [
            [[_cell(r[k]) for k, _ in cols] for r in report.TABLES[name](session, project)]
            for name, (_, cols) in TABLES.items()
        ]
        png = report.series_png(report.annotator_series(session, project))
    picture = PILImage.open(io.BytesIO(png)).convert("RGB")
    return [*(settings[k] for k in SETTINGS), *tables, picture]


def save_settings(require: Require, token: str, *values: Any) -> str:
    user = require(token, Permission.dashboard)
    changes = dict(zip(SETTINGS, values, strict=True))
    changes["overlap_annotators"] = int(changes["overlap_annotators"] or 2)
    changes["gold_feedback"] = bool(changes["gold_feedback"])
    try:
        with session_scope() as session:
            project = served_project(session, user)
            quality_service.set_quality_settings(session, user, project, **changes)
            marked = quality_service.count_overlap(session, project)
    except ServiceError as e:
        return f"Not saved: {e}"
    return f"Saved. {marked} photos are overlap photos."


def mark_gold(require: Require, token: str, image_id: float | None, gold: bool) -> str:
    user = require(token, Permission.dashboard)
    if not image_id:
        return "Type the number of a reviewed photo first."
    try:
        with session_scope() as session:
            project = served_project(session, user)
            quality_service.mark_gold(
                session, user, project=project, image_id=int(image_id), gold=gold
            )
    except ServiceError as e:
        return f"Not changed: {e}"
    return f"Photo {int(image_id)} is {'now gold' if gold else 'no longer gold'}."


def csv_file(require: Require, token: str, table: str) -> Any:
    """The table as a CSV file in Gradio's cache, shown for download."""
    user = require(token, Permission.dashboard)
    with session_scope() as session:
        project = served_project(session, user)
        text = report.to_csv(report.TABLES[table](session, project))
    folder = Path(tempfile.mkdtemp(prefix="panelbeater-ui-quality-"))
    try:
        path = folder / f"quality_{table}.csv"
        path.write_text(text, encoding="utf-8")
        cached = save_file_to_cache(str(path), cache_dir=get_upload_folder())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return gr.update(value=cached, visible=True)


def build(token: gr.State, dash_tab: gr.Tab, require: Require) -> None:
    """Lay the quality section out where it is called and wire its events."""
    with gr.Accordion("Quality: overlap, agreement and gold", open=True, elem_id="pb-quality"):
        with gr.Row():
            overlap_share = gr.Number(label="Overlap share of photos", minimum=0, maximum=1)
            overlap_n = gr.Number(label="Annotators per overlap photo", precision=0, minimum=2)
            gold_share = gr.Number(label="Gold share of each queue", minimum=0, maximum=1)
            feedback = gr.Checkbox(label="Annotators see their gold comparison")
        with gr.Row():
            iou = gr.Number(label="Match IoU threshold", minimum=0.01, maximum=1)
            quorum = gr.Number(label="Consensus quorum q", minimum=0.01, maximum=1)
            low = gr.Number(label="Review first under agreement", minimum=0, maximum=1)
            save = gr.Button("Save quality settings", size="sm", elem_id="pb-quality-save")
        with gr.Row():
            gold_id = gr.Number(
                label="Reviewed photo (number)",
                value=None,
                precision=0,
                elem_id="pb-quality-gold-id",
            )
            gold_on = gr.Button("Mark as gold", size="sm", elem_id="pb-quality-mark-gold")
            gold_off = gr.Button("Unmark gold", size="sm", elem_id="pb-quality-unmark-gold")
        msg = gr.Markdown(elem_id="pb-quality-msg")
        frames = [
            gr.Dataframe(
                headers=[h for _, h in cols],
                label=label,
                interactive=False,
                elem_id=f"pb-quality-table-{name}",
            )
            for name, (label, cols) in TABLES.items()
        ]
        series = gr.Image(
            label="Agreement and gold recall per day", interactive=False, elem_id="pb-quality-plot"
        )
        with gr.Row():
            which = gr.Dropdown(
                choices=[(label, name) for name, (label, _) in TABLES.items()]
                + [("Per annotator and day", "series")],
                value="annotators",
                label="Table to download",
            )
            get_csv = gr.Button("Download CSV", size="sm", elem_id="pb-quality-csv")
        csv_out = gr.File(label="Quality CSV", interactive=False, visible=False)
        refresh_btn = gr.Button("Refresh quality", size="sm", elem_id="pb-quality-refresh")

    fields = [overlap_share, overlap_n, gold_share, feedback, iou, quorum, low]
    outputs = [*fields, *frames, series]
    dash_tab.select(lambda t: refresh(require, t), [token], outputs)
    refresh_btn.click(lambda t: refresh(require, t), [token], outputs)
    save.click(lambda t, *v: save_settings(require, t, *v), [token, *fields], msg).then(
        lambda t: refresh(require, t), [token], outputs
    )
    gold_on.click(lambda t, i: mark_gold(require, t, i, True), [token, gold_id], msg)
    gold_off.click(lambda t, i: mark_gold(require, t, i, False), [token, gold_id], msg)
    get_csv.click(lambda t, w: csv_file(require, t, w), [token, which], csv_out)
