"""The dashboard's retraining area: which stages, which preset, which brought weights to
start from, and the button that queues the round through ``jobs.service.start_round``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from annotator.access import require, token_user
from annotator.jobs_panel import jobs_table
from core.presets import DEFAULT_PRESET, PRESETS
from db.session import session_scope
from jobs.service import start_round
from models.registry import stage_infos
from services.accounts import users as user_service
from services.accounts.projects import served_project
from services.accounts.users import Permission
from services.dashboard import summary as dashboard_service
from services.errors import ServiceError
from services.training.lifecycle import plan_round

#: (label, stage) choices for a retraining round on the dashboard: every stage except those
#: made of other stages (a round trains the pipeline's parts on their own).
ROUND_STAGES = [(s.title, s.name) for s in stage_infos() if not s.built_from]


def retrain(
    token: str,
    stages: list[str] | None = None,
    preset: str = DEFAULT_PRESET,
    start_from: list[str] | None = None,
) -> str:
    user = require(token, Permission.retrain)
    preset = preset or DEFAULT_PRESET
    weights = dashboard_service.picked_weights(start_from)
    try:
        with session_scope() as session:
            job = start_round(
                session,
                project=served_project(session, user),
                created_by=user.username,
                stages=stages,
                config=preset,
                weights=weights or None,
            )
            picked = (job.params or {}).get("stages")
            plan = plan_round(session, stages=picked, config=preset, weights=weights)
    except ServiceError as e:
        return f"Could not start retraining: {e}"
    return f"Retraining round queued as job {job.id}. It will train " + "; ".join(plan) + "."


def weights_picker(token: str) -> dict:
    """The weights-picker's choices when the dashboard opens (the weights folder may change);
    none for a role that may not retrain."""
    user = token_user(token)
    if user is None or not user_service.can(user, Permission.retrain):
        return gr.update(choices=[])
    return gr.update(choices=dashboard_service.start_weights_choices())


@dataclass
class RetrainPanel:
    stages: gr.CheckboxGroup
    preset: gr.Dropdown
    weights: gr.Dropdown
    button: gr.Button
    message: gr.Markdown


def retrain_panel() -> RetrainPanel:
    """The round's choices and its button, built in the caller's Blocks."""
    with gr.Row():
        stages = gr.CheckboxGroup(
            choices=ROUND_STAGES,
            label="Stages to retrain (none ticked: the promoted ones)",
            elem_id="pb-retrain-stages",
        )
        preset = gr.Dropdown(
            choices=list(PRESETS),
            value=DEFAULT_PRESET,
            label="Preset (base needs a GPU)",
            elem_id="pb-retrain-preset",
        )
    weights = gr.Dropdown(
        choices=[],
        multiselect=True,
        label="Start from weights you brought (optional; adds the stage to the "
        "round; `panelbeater weights add` brings files)",
        elem_id="pb-retrain-weights",
    )
    button = gr.Button("Start retraining", variant="secondary", elem_id="pb-retrain")
    message = gr.Markdown(elem_id="pb-retrain-msg")
    return RetrainPanel(stages, preset, weights, button, message)


def wire(token: gr.State, dash_tab: gr.Tab, panel: RetrainPanel, jobs: gr.Dataframe) -> None:
    """Opening the dashboard lists the weights; a queued round shows at once in ``jobs``."""
    dash_tab.select(weights_picker, [token], panel.weights)
    panel.button.click(
        retrain, [token, panel.stages, panel.preset, panel.weights], panel.message
    ).then(jobs_table, [token], jobs)
