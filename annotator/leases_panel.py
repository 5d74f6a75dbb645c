"""The dashboard's "Who is working on what" section: the queue's live leases (who holds which
photo, since when) and a button that frees one, for a holder who went home.

Thin: every handler calls ``services.labelling.leases``. The caller passes its
``require(token, permission) -> User`` so this module needs nothing of the app.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from db.models import User
from db.session import session_scope
from services.accounts.projects import served_project
from services.accounts.users import Permission
from services.errors import ServiceError
from services.labelling import leases as lease_service

Require = Callable[[str, Permission], User]
HEADERS = ["photo", "file", "status", "held by", "held for (min)", "expires in (min)"]


def rows(require: Require, token: str) -> list[list[object]]:
    user = require(token, Permission.dashboard)
    with session_scope() as session:
        leases = lease_service.list_leases(session, served_project(session, user).id)
    return [
        [
            x["image_id"],
            x["file_name"],
            x["status"],
            x["user"],
            round(x["held_seconds"] / 60, 1),
            round(x["seconds_left"] / 60, 1),
        ]
        for x in leases
    ]


def release(require: Require, token: str, image_id: float | None) -> str:
    user = require(token, Permission.dashboard)
    if not image_id:
        return "Type the number of a photo in the table first."
    try:
        with session_scope() as session:
            project = served_project(session, user)
            had = lease_service.release_image(session, project.id, int(image_id))
    except ServiceError as e:
        return f"Not released: {e}"
    if not had:
        return f"Photo {int(image_id)} was not held by anyone."
    return f"Photo {int(image_id)} is free: the queue hands it out again."


def build(token: gr.State, dash_tab: gr.Tab, require: Require) -> None:
    """Lay the section out where it is called and wire its events."""
    with gr.Accordion("Who is working on what", open=True, elem_id="pb-leases"):
        table = gr.Dataframe(
            headers=HEADERS,
            label="Photos handed out by the queue (nobody else gets them meanwhile)",
            interactive=False,
            elem_id="pb-leases-table",
        )
        with gr.Row():
            image_id = gr.Number(label="Photo", precision=0, elem_id="pb-leases-photo")
            free = gr.Button("Release", size="sm", elem_id="pb-leases-release")
            again = gr.Button("Refresh", size="sm", elem_id="pb-leases-refresh")
        msg = gr.Markdown(elem_id="pb-leases-msg")

    def show(t: str) -> list[list[object]]:
        return rows(require, t)

    dash_tab.select(show, [token], table)
    again.click(show, [token], table)
    free.click(lambda t, i: release(require, t, i), [token, image_id], msg).then(
        show, [token], table
    )
