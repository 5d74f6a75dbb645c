"""The Gradio UI mounted at ``/ui``: sign-in, the workspace canvas, the lead dashboard,
inspections, help.

``build_ui`` composes the page; each dashboard area is built (and mostly handled) in its own
``annotator/*_panel.py`` module. Every handler checks the bearer token it is given through
``annotator.access`` (Gradio endpoints can be called directly, so hiding a tab is not
enough); the dashboard and its downloads need the ``dashboard``/``export`` permissions,
exactly like ``/api/stats`` and ``/api/export``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from annotator import (
    assistance_panel,
    dashboard_panel,
    exports_panel,
    jobs_panel,
    leases_panel,
    members_panel,
    quality_panel,
    retrain_panel,
)
from annotator.access import md_escape, not_a_member, require, token_user
from annotator.canvas import canvas_widget, session_value
from annotator.imports_panel import (
    NO_PHOTOS_HINT,
    ImportPanel,
    PhotosPanel,
    add_photos,
    import_panel,
    photos_panel,
    run_import,
)
from annotator.jobs_panel import jobs_poll, jobs_table
from annotator.session import COOKIE, END_SESSION_JS, START_SESSION_JS
from annotator.shortcuts import shortcuts_markdown
from db.models import User
from db.session import session_scope
from models.registry import pre_annotating_stages, stage_infos
from services.accounts import users as user_service
from services.accounts.projects import served_project
from services.accounts.users import Permission
from services.dashboard import summary as dashboard_service
from services.errors import TooManyAttempts
from services.labelling import leases as lease_service
from services.review import decisions as review_service
from services.training.assist_training import autotrain_summary
from services.training.damage_seg_training import autotrain_summary as damage_seg_summary
from services.training.part_seg_training import autotrain_summary as part_seg_summary

#: Stages whose promoted version the dashboard may run on one photo at a lower threshold.
PREDICT_STAGES = [(s.title, s.name) for s in stage_infos() if s.name in pre_annotating_stages()]


#: Gradio deletes the files it holds (uploads, export downloads) this many seconds old, and
#: looks for them this often.
CACHE_MAX_AGE_S = 3600
CACHE_SWEEP_EVERY_S = 600


def mount_options() -> dict[str, Any]:
    """Extra keyword arguments for ``gr.mount_gradio_app`` (app.py reads this).

    No run history: Gradio would keep every event's inputs and outputs in the browser, the
    sign-in's password and token among them.
    """
    return {"run_history": False}


def first_start_hint() -> str:
    with session_scope() as session:
        if user_service.count_users(session) == 0:
            return (
                "**No users exist yet.** On the server, run the `panelbeater user add NAME --role "
                "admin` command that `panelbeater serve` printed when it started (it names the "
                "server's data dir; there is no default password)."
            )
    return ""


def _landing(user: User) -> str:
    """The tab a user lands on: a lead the dashboard, whose workspace takes a photo from the
    queue (a lease) only once it is opened (static/canvas/main.js)."""
    return "dashboard" if user_service.lands_on_dashboard(user.role) else "workspace"


def _landing_tab(user: User) -> gr.Tabs:
    return gr.Tabs(selected=_landing(user))


def _signed_in(token: str, user: User, *, land: bool = True) -> tuple:
    """``land``: select the landing tab now. A fresh sign-in selects it in :func:`landing`
    instead, once the session cookie is set: the dashboard tab's events need it."""
    perms = sorted(user_service.permissions(user.role))
    who = f"Signed in as **{md_escape(user.username)}** ({user.role.value})"
    return (
        token,
        gr.update(visible=False),
        gr.update(visible=True),
        who,
        session_value(token, user.username, user.role.value, perms, _landing(user)),
        gr.update(visible=Permission.dashboard in perms),
        _landing_tab(user) if land else gr.update(),
        "",
    )


def _signed_out(message: str = "") -> tuple:
    return (
        "",
        gr.update(visible=True),
        gr.update(visible=False),
        "",
        "",
        gr.update(visible=False),
        gr.update(),
        message,
    )


def login(username: str, password: str, request: gr.Request | None = None) -> tuple:
    address = request.client.host if request is not None and request.client else None
    with session_scope() as session:
        try:
            user = user_service.authenticate(
                session, username or "", password or "", address=address
            )
        except TooManyAttempts as e:
            return _signed_out(str(e))
        if user is None:
            return _signed_out("Wrong user name or password.")
        refused = not_a_member(session, user)
        if refused:
            return _signed_out(md_escape(refused))
        token = user_service.issue_token(session, user)
    return _signed_in(token, user, land=False)


def landing(token: str) -> gr.Tabs:
    """After a sign-in, once the session cookie is set: the user's landing tab."""
    user = token_user(token)
    return gr.update() if user is None else _landing_tab(user)


def restore(request: gr.Request) -> tuple:
    """On page load: the session of the sign-in cookie (``annotator.session``), if still valid."""
    return restore_token(request.cookies.get(COOKIE, "") if request is not None else "")


def restore_token(stored: str | None) -> tuple:
    user = token_user(stored)
    if user is None:
        return _signed_out(first_start_hint())
    with session_scope() as session:
        refused = not_a_member(session, user)
    return _signed_out(md_escape(refused)) if refused else _signed_in(stored, user)


def logout(token: str) -> tuple:
    if token:
        with session_scope() as session:
            lease_service.sign_out(session, token)
    return _signed_out("Signed out.")


def _clear_password() -> str:
    return ""


#: The only events that run without a signed-in session cookie
#: (``annotator.session.UiSessionGuard``): signing in and out, and the jobs poll, which checks
#: the token it is given and stops itself when the session has ended.
SIGN_IN_HANDLERS = (login, restore, logout, _clear_password, jobs_poll)


def anonymous_fn_ids(demo: gr.Blocks) -> frozenset[int]:
    """The ids of ``demo``'s events whose handler is one of :data:`SIGN_IN_HANDLERS`."""
    return frozenset(i for i, f in demo.fns.items() if f.fn in SIGN_IN_HANDLERS)


# ---------- dashboard ----------


def dashboard(token: str) -> tuple:
    user = require(token, Permission.dashboard)
    with session_scope() as session:
        project = served_project(session, user)
        data = dashboard_service.dashboard_data(session, project)
        autotrain = "  \n".join(
            f(session, project) for f in (part_seg_summary, damage_seg_summary, autotrain_summary)
        )
        rates = review_service.rejection_rates_markdown(session, project)
    st = data["stats"]
    summary = (
        f"**{st['images']}** photos · **{st['labelled']}** labelled (or reviewed) · "
        f"**{st['annotations']}** annotations · "
    ) + " · ".join(f"{k}: {v}" for k, v in st["per_status"].items())
    summary += f"  \n{autotrain}\n\n{rates}"
    if not st["images"] and Permission.import_ in user_service.permissions(user.role):
        summary = f"{NO_PHOTOS_HINT}\n\n{summary}"
    status_rows = [[k, v] for k, v in st["per_status"].items()]
    group_rows = [[k, v] for k, v in st["per_group"].items()]
    class_rows = [[k, v] for k, v in st["per_class"].items()]
    thr_rows = [
        [
            t["author"],
            t["photos"],
            t["instances"],
            t["active_hours"],
            t["photos_per_hour"],
            t["instances_per_hour"],
        ]
        for t in data["throughput"]
    ]
    # the plots, the model state and the version table refresh with the rest
    panel = dashboard_panel.refresh(user)
    return (summary, status_rows, group_rows, class_rows, thr_rows, *panel, "", "", "")


def dashboard_after_action(token: str) -> tuple:
    """The dashboard after a button of its own: the action's message stays."""
    return dashboard(token)[:-3]


def upload_photos(token: str, files: list[str] | None, status: str | None = None) -> str:
    """The dashboard's "Add photos" group (``annotator.imports_panel``)."""
    return add_photos(require(token, Permission.import_), files, status)


def import_labels(token: str, *values: Any) -> str:
    """The dashboard's "Import labels" group (``annotator.imports_panel``)."""
    return run_import(require(token, Permission.import_), *values)


def promote_version(token: str, version: str | None, confirm: bool = False) -> str:
    return dashboard_panel.promote(require(token, Permission.retrain), version, confirm)


def rollback_version(token: str, version: str | None) -> str:
    return dashboard_panel.rollback(require(token, Permission.retrain), version)


def predict_photo(token: str, stage: str | None, image_id: float | None, thr: float) -> str:
    return dashboard_panel.predict_photo(require(token, Permission.retrain), stage, image_id, thr)


def start_fraud_screen(token: str) -> str:
    return dashboard_panel.start_screen(require(token, Permission.retrain))


def job_details(token: str, job_id: float | None) -> str:
    return dashboard_panel.job_detail(require(token, Permission.dashboard), job_id)


# ---------- the page's parts ----------


@dataclass
class SignInPanel:
    box: gr.Column
    username: gr.Textbox
    password: gr.Textbox
    button: gr.Button
    message: gr.Markdown


def sign_in_panel() -> SignInPanel:
    """The sign-in form, shown until a session starts."""
    with gr.Column(visible=True, elem_id="pb-login") as box:
        gr.Markdown("## Panelbeater — sign in")
        username = gr.Textbox(label="User name", elem_id="pb-login-user")
        password = gr.Textbox(label="Password", type="password", elem_id="pb-login-password")
        button = gr.Button("Sign in", variant="primary", elem_id="pb-login-button")
        message = gr.Markdown(elem_id="pb-login-msg")
    return SignInPanel(box, username, password, button, message)


@dataclass
class SummaryPanel:
    refresh: gr.Button
    summary: gr.Markdown
    by_status: gr.Dataframe
    by_group: gr.Dataframe
    by_class: gr.Dataframe
    throughput: gr.Dataframe

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What :func:`dashboard` fills first, in its order."""
        return [self.summary, self.by_status, self.by_group, self.by_class, self.throughput]


def summary_panel() -> SummaryPanel:
    """The dashboard's head: the refresh button, the counts and the throughput table."""
    refresh = gr.Button("Refresh", size="sm", elem_id="pb-dash-refresh")
    summary = gr.Markdown(elem_id="pb-dash-summary")
    with gr.Row():
        by_status = gr.Dataframe(
            headers=["status", "photos"], label="Photos per status", interactive=False
        )
        by_group = gr.Dataframe(
            headers=["group", "instances"], label="Instances per group", interactive=False
        )
        by_class = gr.Dataframe(
            headers=["class", "instances"], label="Instances per class", interactive=False
        )
    throughput = gr.Dataframe(
        headers=["annotator", "photos", "instances", "active hours", "photos/h", "instances/h"],
        label="Throughput per annotator (last 7 days)",
        interactive=False,
        elem_id="pb-dash-throughput",
    )
    return SummaryPanel(refresh, summary, by_status, by_group, by_class, throughput)


@dataclass
class DashboardTab:
    tab: gr.Tab
    summary: SummaryPanel
    plots: dashboard_panel.PlotPanel
    tools: dashboard_panel.ToolsPanel
    exports: exports_panel.ExportPanel
    photos: PhotosPanel
    label_import: ImportPanel
    retrain: retrain_panel.RetrainPanel
    assistance: assistance_panel.AssistancePanel
    jobs: jobs_panel.JobsPanel
    members: members_panel.MembersPanel

    @property
    def stale_msgs(self) -> list[gr.components.Component]:
        """The action messages a refresh clears: they spoke of the state before it."""
        return [self.plots.version_msg, self.tools.predict_msg, self.tools.screen_msg]

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What :func:`dashboard` fills, in its order (:func:`dashboard_after_action` leaves
        out the stale messages)."""
        return [*self.summary.outputs, *self.plots.outputs, *self.stale_msgs]


def dashboard_tab(token: gr.State) -> DashboardTab:
    """The lead's tab, hidden until a session with the ``dashboard`` permission starts; the
    quality and leases sections wire their own events."""
    with gr.Tab("Dashboard", id="dashboard", visible=False, elem_id="pb-tab-dashboard") as tab:
        summary = summary_panel()
        plots = dashboard_panel.plot_panel()
        tools = dashboard_panel.tools_panel(PREDICT_STAGES)
        quality_panel.build(token, tab, require)
        leases_panel.build(token, tab, require)
        exports = exports_panel.export_panel()
        photos = photos_panel()
        label_import = import_panel()
        retrain = retrain_panel.retrain_panel()
        assistance = assistance_panel.assistance_panel()
        jobs = jobs_panel.jobs_panel()
        members = members_panel.members_panel()
    return DashboardTab(
        tab=tab,
        summary=summary,
        plots=plots,
        tools=tools,
        exports=exports,
        photos=photos,
        label_import=label_import,
        retrain=retrain,
        assistance=assistance,
        jobs=jobs,
        members=members,
    )


def _wire_sign_in(
    demo: gr.Blocks,
    token: gr.State,
    panel: SignInPanel,
    logout_btn: gr.Button,
    canvas: gr.HTML,
    tabs: gr.Tabs,
    outputs: list[gr.components.Component],
) -> None:
    """Signing in, out and a page load fill ``outputs``, in :func:`_signed_in`'s order."""
    for sign_in in (panel.button.click, panel.password.submit):
        sign_in(login, [panel.username, panel.password], outputs).then(
            None, [canvas], None, js=START_SESSION_JS
        ).then(_clear_password, None, panel.password).then(landing, [token], tabs)
    logout_btn.click(logout, [token], outputs).then(None, None, None, js=END_SESSION_JS)
    demo.load(restore, None, outputs)


def _wire_model_tools(token: gr.State, dash: DashboardTab) -> None:
    """Promote, roll back, one photo at a lower threshold, the fraud screen, a job's story."""
    plots, tools, jobs = dash.plots, dash.tools, dash.jobs
    refreshed = [*dash.summary.outputs, *plots.outputs]  # the action's message stays
    plots.promote.click(
        promote_version, [token, plots.version_pick, plots.confirm], plots.version_msg
    ).then(dashboard_after_action, [token], refreshed)
    plots.rollback.click(rollback_version, [token, plots.version_pick], plots.version_msg).then(
        dashboard_after_action, [token], refreshed
    )
    tools.predict.click(
        predict_photo, [token, tools.stage, tools.image_id, tools.threshold], tools.predict_msg
    )
    tools.screen.click(start_fraud_screen, [token], tools.screen_msg).then(
        jobs_table, [token], jobs.table
    )
    jobs.show.click(job_details, [token, jobs.job_pick], jobs.info)


def _wire_dashboard(token: gr.State, dash: DashboardTab) -> None:
    # Gradio numbers the events in the order they are wired, and its API names for repeated
    # handlers (dashboard_1, jobs_table_2, lambda_15) follow that numbering: keep the order.
    # (The quality, leases and inspections sections wire theirs as they are built, first.)
    dash.summary.refresh.click(dashboard, [token], dash.outputs)
    dash.tab.select(dashboard, [token], dash.outputs)
    exports_panel.wire(token, dash.exports)
    _wire_model_tools(token, dash)
    retrain_panel.wire(token, dash.tab, dash.retrain, dash.jobs.table)
    jobs_panel.wire(token, dash.tab, dash.jobs)
    assistance_panel.wire(token, dash.tab, dash.assistance)
    members_panel.wire(token, dash.tab, dash.members)
    photos, label_import = dash.photos, dash.label_import
    photos.button.click(upload_photos, [token, photos.files, photos.status], photos.message).then(
        dashboard, [token], dash.outputs
    )
    label_import.button.click(
        import_labels, [token, *label_import.inputs], label_import.message
    ).then(dashboard, [token], dash.outputs)


def build_ui() -> gr.Blocks:
    with gr.Blocks(
        title="Panelbeater",
        analytics_enabled=False,
        delete_cache=(CACHE_SWEEP_EVERY_S, CACHE_MAX_AGE_S),
    ) as demo:
        token = gr.State("")
        sign_in = sign_in_panel()
        with gr.Column(visible=False, elem_id="pb-main") as main_box:
            with gr.Row():
                whoami = gr.Markdown(elem_id="pb-whoami")
                logout_btn = gr.Button("Sign out", size="sm", scale=0, elem_id="pb-logout")
            with gr.Tabs(elem_id="pb-tabs") as tabs:
                with gr.Tab("Workspace", id="workspace", elem_id="pb-tab-workspace"):
                    canvas = canvas_widget()
                dash = dashboard_tab(token)
                with gr.Tab("Inspections", id="inspections", elem_id="pb-tab-inspections"):
                    from annotator.inspections_panel import inspections_panel

                    inspections_panel(token, require)
                with gr.Tab("Help", id="help", elem_id="pb-tab-help"):
                    gr.Markdown("### Keyboard shortcuts\n\n" + shortcuts_markdown())

        outputs = [token, sign_in.box, main_box, whoami, canvas, dash.tab, tabs, sign_in.message]
        _wire_sign_in(demo, token, sign_in, logout_btn, canvas, tabs, outputs)
        _wire_dashboard(token, dash)
    return demo
