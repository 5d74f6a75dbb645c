"""The dashboard's background jobs: the ten latest with their live progress, polled every two
seconds while the dashboard is open, and the picker for one job's full story (which
``annotator.dashboard_panel.job_detail`` tells).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from annotator.access import token_user
from db.models import User
from db.session import session_scope
from services.accounts import users as user_service
from services.accounts.projects import served_project
from services.accounts.users import Permission
from services.dashboard import summary as dashboard_service
from services.errors import ServiceError

HEADERS = ["job", "kind", "status", "stage", "progress", "epoch", "loss", "message"]


def jobs_poll(token: str) -> tuple[list[list[Any]], gr.Timer]:
    """The jobs table for the dashboard's timer; the timer stops once the session has ended
    (expired or signed out elsewhere), rather than raising an error every two seconds."""
    user = token_user(token)
    return _job_rows(user), gr.Timer(active=user is not None)


def jobs_table(token: str) -> list[list[Any]]:
    """Recent background jobs with their live progress (polled while the dashboard is open)."""
    return _job_rows(token_user(token))


def _job_rows(user: User | None) -> list[list[Any]]:
    if user is None or not user_service.can(user, Permission.dashboard):
        return []
    from jobs.service import job_dict, list_jobs

    with session_scope() as session:
        try:
            project = served_project(session, user)
        except ServiceError:  # not a member of the served project
            return []
        rows = [job_dict(j) for j in list_jobs(session, project=project, limit=10)]
    return [
        [
            r["id"],
            r["kind"],
            r["status"],
            r["stage"] or "",
            f"{100 * r['progress']:.0f}%",
            "" if r["epoch"] is None else r["epoch"],
            "" if r["loss"] is None else round(r["loss"], 4),
            dashboard_service.job_summary(r),
        ]
        for r in rows
    ]


@dataclass
class JobsPanel:
    table: gr.Dataframe
    job_pick: gr.Number
    show: gr.Button
    info: gr.Markdown
    timer: gr.Timer


def jobs_panel() -> JobsPanel:
    """The jobs table, the job picker and its story, and the poll's timer, built in the
    caller's Blocks."""
    table = gr.Dataframe(
        headers=HEADERS,
        label="Background jobs (live)",
        interactive=False,
        elem_id="pb-dash-jobs",
    )
    with gr.Row():
        job_pick = gr.Number(label="Job id", precision=0, scale=0, elem_id="pb-job-pick")
        show = gr.Button("Show its steps, full error and log", size="sm", elem_id="pb-job-show")
    info = gr.Markdown(elem_id="pb-job-info")
    timer = gr.Timer(2.0, active=False)  # started when the dashboard opens
    return JobsPanel(table, job_pick, show, info, timer)


def wire(token: gr.State, dash_tab: gr.Tab, panel: JobsPanel) -> None:
    """Opening the dashboard fills the table and starts the poll; the poll stops itself."""
    panel.timer.tick(jobs_poll, [token], [panel.table, panel.timer], show_progress="hidden")
    dash_tab.select(jobs_table, [token], panel.table).then(
        lambda: gr.Timer(active=True), None, panel.timer
    )
