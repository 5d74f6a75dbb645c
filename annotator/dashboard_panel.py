"""The lead dashboard's model and plot areas: why a promoted model shows nothing, what a
photo costs now, the five plots with a CSV of each, the version table with promote and roll back, one photo at a
lower threshold, the fraud screen, and a job's full story. ``annotator.app`` places the
groups, checks the user and refreshes them with the rest of the dashboard; the numbers come
from ``services.dashboard.summary`` and ``services.dashboard.plots``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder
from sqlmodel import Session

from db.models import ModelVersion, User
from db.session import session_scope
from services.accounts.projects import served_project
from services.dashboard import plots as plot_service
from services.dashboard import summary as dashboard_service
from services.errors import ServiceError

#: (plot name, title, CSV file name), in the order the dashboard shows them.
PLOTS = (
    ("pace", "Labelled photos per day, and the projection to finish the queue", "labelled-per-day"),
    ("classes", "Instances per class (damage / fake / part; log scale)", "instances-per-class"),
    ("versions", "Held-out metric per model version (star = promoted)", "metric-per-version"),
    ("learning_curve", "Learning curve: held-out metric against labelled photos", "learning-curve"),
    ("effort", "Actions per photo per round, against the learning curve", "effort-per-round"),
)
VERSION_HEADERS = [
    "version",
    "stage",
    "promoted",
    "primary metric (held-out)",
    "other held-out figures",
    "trained on (photos)",
    "why (promotion rule)",
]
JOB_DETAIL_CHARS = 20_000


@dataclass
class PlotPanel:
    state: gr.Markdown
    images: list[gr.Image]
    csvs: list[gr.DownloadButton]
    versions: gr.Dataframe
    version_pick: gr.Dropdown
    promote: gr.Button
    confirm: gr.Checkbox
    rollback: gr.Button
    version_msg: gr.Markdown

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What :func:`refresh` fills, in its order."""
        return [self.state, *self.images, *self.csvs, self.versions, self.version_pick]


def plot_panel() -> PlotPanel:
    """The model state line, the plots and the version table, built in the caller's Blocks."""
    state = gr.Markdown(elem_id="pb-dash-model-state")
    images, csvs = [], []
    with gr.Accordion("Plots", open=True, elem_id="pb-dash-plots"):
        for row in (PLOTS[:2], PLOTS[2:4], PLOTS[4:]):
            with gr.Row():
                for name, title, _ in row:
                    with gr.Column(elem_id=f"pb-plot-{name}"):
                        images.append(
                            gr.Image(
                                label=title,
                                show_label=False,  # the picture's own title says it
                                type="filepath",
                                format="png",
                                interactive=False,
                                buttons=["fullscreen"],
                                elem_id=f"pb-plot-{name}-img",
                            )
                        )
                        csvs.append(
                            gr.DownloadButton(
                                "CSV of these numbers",
                                size="sm",
                                elem_id=f"pb-plot-{name}-csv",
                            )
                        )
    with gr.Accordion("Model versions", open=True, elem_id="pb-dash-versions"):
        versions = gr.Dataframe(
            headers=VERSION_HEADERS,
            interactive=False,
            wrap=True,
            column_widths=["11%", "9%", "9%", "15%", "22%", "8%", "26%"],
            max_height=420,
            elem_id="pb-dash-models",
        )
        with gr.Row():
            version_pick = gr.Dropdown(
                choices=[],
                label="Version",
                info="Promote overrides the promotion rule; roll back promotes the "
                "stage's previous version.",
                elem_id="pb-version-pick",
            )
            promote = gr.Button("Promote", size="sm", scale=0, elem_id="pb-version-promote")
            confirm = gr.Checkbox(
                label="Promote below the bar: annotators will see its suggestions",
                value=False,
                scale=0,
                elem_id="pb-version-confirm",
            )
            rollback = gr.Button(
                "Roll back its stage", size="sm", scale=0, elem_id="pb-version-rollback"
            )
        version_msg = gr.Markdown(elem_id="pb-version-msg")
    return PlotPanel(
        state, images, csvs, versions, version_pick, promote, confirm, rollback, version_msg
    )


def _cached(folder: Path, name: str, data: bytes | str) -> str:
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return save_file_to_cache(str(path), cache_dir=get_upload_folder())


def refresh(user: User) -> list[Any]:
    """Values for :attr:`PlotPanel.outputs`: the model state, each plot's PNG and CSV (files
    in Gradio's cache, served to signed-in sessions only), the version table and picker."""
    with session_scope() as session:
        project = served_project(session, user)
        tables = plot_service.plot_tables(session, project)
        state = dashboard_service.model_state(session, project)
        rows = dashboard_service.version_table(session)
    folder = Path(tempfile.mkdtemp(prefix="panelbeater-ui-plots-"))
    try:
        pngs = [_cached(folder, f"{f}.png", plot_service.render(n, tables[n])) for n, _, f in PLOTS]
        csvs = [_cached(folder, f"{f}.csv", plot_service.to_csv(tables[n])) for n, _, f in PLOTS]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    pace = tables["pace"]
    lines = [f"- {_md(s)}" for s in state]
    if pace["days_to_finish"] is not None:
        lines.insert(
            0,
            f"At {pace['pace_per_day']:g} labelled photos a day, the {pace['open']} open photos "
            f"take {pace['days_to_finish']} more day{'s' if pace['days_to_finish'] != 1 else ''} "
            f"(until {pace['finish_on']}).",
        )
    # what a photo costs now, its own paragraph at the top: the saving a lead looks for
    lines.insert(0, _md(tables["effort"]["sentence"]) + "\n")
    table = [
        [
            r["name"],
            r["stage"],
            "yes" if r["promoted"] else "",
            r["primary"],
            r["heldout"],
            r["trained_on"],
            r["why"],
        ]
        for r in rows
    ]
    picks = gr.update(choices=[r["name"] for r in rows if r["stage"] != "external"])
    return ["\n".join(lines), *pngs, *csvs, table, picks]


def _on_version(
    user: User,
    version: str | None,
    act: Callable[[Session, str], ModelVersion],
    *,
    unpicked: str,
    done: str,
    refused: str,
) -> str:
    """``act(session, version)`` for a picked version in the user's project; ``done`` filled
    with the promoted version's ``name`` and ``stage``, or ``refused`` and the reason."""
    if not version:
        return unpicked
    try:
        with session_scope() as session:
            served_project(session, user)
            mv = act(session, version)
            return done.format(name=mv.name, stage=mv.stage)
    except ServiceError as e:
        return f"{refused}: {_md(str(e))}"


def promote(user: User, version: str | None, confirm: bool = False) -> str:
    """The lead's override: promote ``version`` whatever the promotion rule says; below the
    bar to pre-annotate only once ``confirm`` is ticked."""
    return _on_version(
        user,
        version,
        lambda session, ref: dashboard_service.promote_version(
            session, ref, confirm_below_bar=bool(confirm)
        ),
        unpicked="Choose a version first.",
        done="**{name}** is now the promoted {stage} (by hand).",
        refused="Not promoted",
    )


def rollback(user: User, version: str | None) -> str:
    """Promote the previous version of ``version``'s stage."""
    return _on_version(
        user,
        version,
        dashboard_service.rollback_stage_of,
        unpicked="Choose a version of the stage to roll back first.",
        done="Rolled back: **{name}** is now the promoted {stage}.",
        refused="Not rolled back",
    )


# ---------- one photo at a lower threshold, the fraud screen, a job's story ----------


@dataclass
class ToolsPanel:
    stage: gr.Dropdown
    image_id: gr.Number
    threshold: gr.Slider
    predict: gr.Button
    predict_msg: gr.Markdown
    screen: gr.Button
    screen_msg: gr.Markdown


def tools_panel(stages: list[tuple[str, str]]) -> ToolsPanel:
    """Built in the caller's Blocks; ``stages``: (label, name) of pre-annotating stages."""
    with gr.Accordion("Model tools", open=False, elem_id="pb-dash-tools"):
        gr.Markdown(
            "**A photo at a lower threshold**: run the stage's promoted version on one photo "
            "with a lower score threshold; its pending predictions of that photo are replaced."
        )
        with gr.Row():
            stage = gr.Dropdown(
                choices=stages,
                value=stages[0][1] if stages else None,
                label="Stage",
                elem_id="pb-thr-stage",
            )
            image_id = gr.Number(label="Photo id", precision=0, elem_id="pb-thr-image")
            threshold = gr.Slider(0.01, 0.95, value=0.1, step=0.01, label="Score threshold")
            predict = gr.Button("Predict this photo", size="sm", scale=0, elem_id="pb-thr-run")
        predict_msg = gr.Markdown(elem_id="pb-thr-msg")
        gr.Markdown(
            "**Fraud screen** (no fake-damage model needed): queues photos whose damage "
            "polygons differ in colour or texture from the paint around them; photos with "
            "severe damage are in the fraud queue already."
        )
        screen = gr.Button("Screen photos for fraud checks", size="sm", elem_id="pb-screen")
        screen_msg = gr.Markdown(elem_id="pb-screen-msg")
    return ToolsPanel(stage, image_id, threshold, predict, predict_msg, screen, screen_msg)


def predict_photo(user: User, stage: str | None, image_id: float | None, threshold: float) -> str:
    from services.training.model_runs import predict_photo as run

    if not stage or not image_id:
        return "Choose a stage and a photo id first."
    try:
        with session_scope() as session:
            out = run(
                session,
                served_project(session, user),
                stage,
                int(image_id),
                threshold=float(threshold),
            )
    except ServiceError as e:
        return f"Not run: {_md(str(e))}"
    return (
        f"{out['version']} on photo {out['image_id']} at threshold {out['threshold']:g}: "
        f"**{out['predictions']}** predictions, pending in the workspace."
    )


def start_screen(user: User) -> str:
    from jobs.service import create_job

    with session_scope() as session:
        job = create_job(
            session,
            "fraud_screen",
            {},
            created_by=user.username,
            project=served_project(session, user),
        )
        return f"Fraud screen queued as job {job.id}; the jobs table shows what it found."


def job_detail(user: User, job_id: float | None) -> str:
    """A job's full story: status, every recorded step, the full error, the log's end."""
    from jobs.service import get_job, job_dict, read_log

    if not job_id:
        return ""
    try:
        with session_scope() as session:
            job = get_job(session, int(job_id), project=served_project(session, user))
            d = job_dict(job)
            log = read_log(job, tail_bytes=4096)
    except ServiceError as e:
        return _md(str(e))
    parts = [f"**Job {d['id']}** ({d['kind']}): {d['status']}"]
    steps = (d["result"] or {}).get("steps") or []
    if steps:
        parts.append("\n".join(f"{i}. {s['step']}: {s['what']}" for i, s in enumerate(steps, 1)))
    if d["error"]:
        parts.append("Error:\n```\n" + d["error"][-JOB_DETAIL_CHARS:] + "\n```")
    if log:
        parts.append("Log (end):\n```\n" + log[-JOB_DETAIL_CHARS:] + "\n```")
    return "\n\n".join(parts)


def _md(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|&" else c for c in text)
