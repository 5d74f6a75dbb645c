"""The dashboard's assistance area (leads and admins): which back end serves assisted drawing
(SAM, MobileSAM, assist_net, GrabCut or auto), through ``services.training.assist``; hidden
from anyone who may not change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from annotator.access import md_escape, not_a_member, require, token_user
from db.session import session_scope
from services.accounts import users as user_service
from services.accounts.projects import served_project
from services.errors import ServiceError
from services.training import assist as assist_service


def _assistance_status(state: dict[str, Any]) -> str:
    line = f"In use: **{state['backend']}**: {md_escape(state['reason'])}."
    if state["env"]:
        line += " Environment variables win over the choice here while they are set."
    return line


def assistance_view(token: str) -> tuple:
    """The assistance area: its choices and the back end in use; hidden from anyone who may
    not change it."""
    user = token_user(token)
    if user is None or not user_service.can(user, assist_service.ASSISTANCE_PERMISSION):
        return gr.update(visible=False), gr.update(choices=[]), ""
    with session_scope() as session:
        if not_a_member(session, user):
            return gr.update(visible=False), gr.update(choices=[]), ""
        try:
            state = assist_service.assistance_state(session, served_project(session, user))
        except ServiceError as e:
            return gr.update(visible=True), gr.update(), f"Assistance: {md_escape(str(e))}"
    choices = [(c["label"], c["value"]) for c in state["choices"]]
    if state["choice"] not in {v for _, v in choices}:
        choices.append((f"{state['choice']} (no longer available)", state["choice"]))
    return (
        gr.update(visible=True),
        gr.update(choices=choices, value=state["choice"]),
        _assistance_status(state),
    )


def save_assistance(token: str, choice: str | None) -> str:
    user = require(token, assist_service.ASSISTANCE_PERMISSION)
    try:
        with session_scope() as session:
            project = served_project(session, user)
            state = assist_service.set_assistance(session, project, choice or "", user=user)
    except ServiceError as e:
        return f"Not saved: {md_escape(str(e))}"
    return f"Saved ({state['choice']}). " + _assistance_status(state)


@dataclass
class AssistancePanel:
    box: gr.Accordion
    pick: gr.Dropdown
    save: gr.Button
    message: gr.Markdown

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What :func:`assistance_view` fills, in its order."""
        return [self.box, self.pick, self.message]


def assistance_panel() -> AssistancePanel:
    """The area, hidden until :func:`assistance_view` shows it, built in the caller's Blocks."""
    with gr.Accordion("Assistance", open=True, visible=False, elem_id="pb-assistance") as box:
        with gr.Row():
            pick = gr.Dropdown(
                choices=[],
                label="Assisted drawing back end",
                info="SAM/MobileSAM from the weights folder, assist_net, "
                "GrabCut or auto; applies at the next click, no restart.",
                elem_id="pb-assistance-choice",
            )
            save = gr.Button("Save", size="sm", scale=0, elem_id="pb-assistance-save")
        message = gr.Markdown(elem_id="pb-assistance-msg")
    return AssistancePanel(box, pick, save, message)


def wire(token: gr.State, dash_tab: gr.Tab, panel: AssistancePanel) -> None:
    dash_tab.select(assistance_view, [token], panel.outputs)
    panel.save.click(save_assistance, [token, panel.pick], panel.message)
