"""The Gradio UI mounted at ``/ui``: sign-in, the workspace canvas, the lead dashboard, help.

Every handler checks the bearer token it is given (Gradio endpoints can be called directly, so
hiding a tab is not enough); the dashboard and its downloads need the ``dashboard``/``export``
permissions, exactly like ``/api/stats`` and ``/api/export``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder

from annotator import dashboard_panel, leases_panel, quality_panel
from annotator.canvas import canvas_widget, session_value
from annotator.imports_panel import import_panel, run_import
from annotator.session import COOKIE, END_SESSION_JS, START_SESSION_JS
from annotator.shortcuts import shortcuts_markdown
from core.records import SPLITS
from core.taxonomy import GROUPS
from db.models import ImageStatus, User
from db.session import session_scope
from jobs.service import start_round
from models.base import PRESETS
from models.registry import pre_annotating_stages, stage_infos
from services.accounts import users as user_service
from services.accounts.projects import list_projects, served_project
from services.accounts.users import Permission
from services.dashboard import summary as dashboard_service
from services.data_io.exports import export_archive
from services.data_io.imports import IMPORT_STATUSES, import_uploads
from services.errors import ServiceError, TooManyAttempts
from services.labelling import leases as lease_service
from services.review import decisions as review_service
from services.training import assist as assist_service
from services.training.assist_training import autotrain_summary
from services.training.part_seg_training import autotrain_summary as part_seg_summary

#: (label, stage) choices for a retraining round on the dashboard: every stage except those
#: made of other stages (a round trains the pipeline's parts on their own).
ROUND_STAGES = [(s.title, s.name) for s in stage_infos() if not s.built_from]
#: Stages whose promoted version the dashboard may run on one photo at a lower threshold.
PREDICT_STAGES = [(s.title, s.name) for s in stage_infos() if s.name in pre_annotating_stages()]
#: The export filters' choices (the CLI's ``--status``, ``--split``, ``--group``).
EXPORT_STATUSES = [s.value for s in ImageStatus]


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


def _user(token: str | None) -> User | None:
    if not token:
        return None
    with session_scope() as session:
        return user_service.user_for_token(session, token)


def first_start_hint() -> str:
    with session_scope() as session:
        if user_service.count_users(session) == 0:
            return "**No users exist yet.** On the server, run `panelbeater user add NAME --role admin` (there is no default password)."
    return ""


def _signed_in(token: str, user: User) -> tuple:
    perms = sorted(user_service.permissions(user.role))
    who = f"Signed in as **{_md_escape(user.username)}** ({user.role.value})"
    return (
        token,
        gr.update(visible=False),
        gr.update(visible=True),
        who,
        session_value(token, user.username, user.role.value, perms),
        gr.update(visible=Permission.dashboard in perms),
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
        message,
    )


def _md_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|&" else c for c in text)


def _not_a_member(session, user: User) -> str | None:
    """Why ``user`` may not work in the served project, or None when they may."""
    try:
        served_project(session, user)
    except ServiceError as e:
        return str(e)
    return None


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
        refused = _not_a_member(session, user)
        if refused:
            return _signed_out(_md_escape(refused))
        token = user_service.issue_token(session, user)
    return _signed_in(token, user)


def restore(request: gr.Request) -> tuple:
    """On page load: the session of the sign-in cookie (``annotator.session``), if still valid."""
    return restore_token(request.cookies.get(COOKIE, "") if request is not None else "")


def restore_token(stored: str | None) -> tuple:
    user = _user(stored)
    if user is None:
        return _signed_out(first_start_hint())
    with session_scope() as session:
        refused = _not_a_member(session, user)
    return _signed_out(_md_escape(refused)) if refused else _signed_in(stored, user)


def logout(token: str) -> tuple:
    if token:
        with session_scope() as session:
            lease_service.sign_out(session, token)
    return _signed_out("Signed out.")


def _clear_password() -> str:
    return ""


def anonymous_fn_ids(demo: gr.Blocks) -> frozenset[int]:
    """The ids of ``demo``'s events whose handler is one of :data:`SIGN_IN_HANDLERS`."""
    return frozenset(i for i, f in demo.fns.items() if f.fn in SIGN_IN_HANDLERS)


# ---------- dashboard ----------


def _require(token: str, permission: Permission) -> User:
    user = _user(token)
    if user is None:
        raise gr.Error("Your session expired; sign in again.")
    if not user_service.can(user, permission):
        raise gr.Error(f"Your role ({user.role.value}) may not use the dashboard.")
    with session_scope() as session:
        refused = _not_a_member(session, user)
    if refused:
        raise gr.Error(refused)
    return user


def dashboard(token: str) -> tuple:
    user = _require(token, Permission.dashboard)
    with session_scope() as session:
        project = served_project(session, user)
        data = dashboard_service.dashboard_data(session, project)
        autotrain = f"{part_seg_summary(session, project)}  \n{autotrain_summary(session, project)}"
        rates = review_service.rejection_rates_markdown(session, project)
    st = data["stats"]
    summary = f"**{st['images']}** photos · **{st['annotations']}** annotations · " + " · ".join(
        f"{k}: {v}" for k, v in st["per_status"].items()
    )
    summary += f"  \n{autotrain}\n\n{rates}"
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


def jobs_poll(token: str) -> tuple[list[list[Any]], gr.Timer]:
    """The jobs table for the dashboard's timer; the timer stops once the session has ended
    (expired or signed out elsewhere), rather than raising an error every two seconds."""
    user = _user(token)
    return _job_rows(user), gr.Timer(active=user is not None)


def jobs_table(token: str) -> list[list[Any]]:
    """Recent background jobs with their live progress (polled while the dashboard is open)."""
    return _job_rows(_user(token))


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


#: The only events that run without a signed-in session cookie
#: (``annotator.session.UiSessionGuard``): signing in and out, and the jobs poll, which checks
#: the token it is given and stops itself when the session has ended.
SIGN_IN_HANDLERS = (login, restore, logout, _clear_password, jobs_poll)


def export_file(
    token: str,
    fmt: str,
    status: list[str] | str | None = None,
    split: str | None = None,
    group: str | None = None,
) -> str:
    """The export as a file in Gradio's cache, which serves it to signed-in sessions only
    (``annotator.session``) and deletes it after ``CACHE_MAX_AGE_S``; the folder it was
    written in goes at once. The filters are the CLI's ``--status`` (several), ``--split``
    and ``--group``; empty ones export everything."""
    user = _require(token, Permission.export)
    status = ",".join(status) if isinstance(status, list) else status
    out_dir = Path(tempfile.mkdtemp(prefix="panelbeater-ui-export-"))
    try:
        with session_scope() as session:
            out = export_archive(
                session,
                served_project(session, user),
                fmt,
                out_dir,
                status=status or None,
                split=split or None,
                group=group or None,
            )
        return save_file_to_cache(out.path, cache_dir=get_upload_folder())
    except ServiceError as e:
        raise gr.Error(f"Not exported: {e}") from None
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def import_labels(token: str, *values: Any) -> str:
    """The dashboard's "Import labels" group (``annotator.imports_panel``)."""
    return run_import(_require(token, Permission.import_), *values)


def promote_version(token: str, version: str | None) -> str:
    return dashboard_panel.promote(_require(token, Permission.retrain), version)


def rollback_version(token: str, version: str | None) -> str:
    return dashboard_panel.rollback(_require(token, Permission.retrain), version)


def predict_photo(token: str, stage: str | None, image_id: float | None, thr: float) -> str:
    return dashboard_panel.predict_photo(_require(token, Permission.retrain), stage, image_id, thr)


def start_fraud_screen(token: str) -> str:
    return dashboard_panel.start_screen(_require(token, Permission.retrain))


def job_details(token: str, job_id: float | None) -> str:
    return dashboard_panel.job_detail(_require(token, Permission.dashboard), job_id)


def upload_photos(token: str, files: list[str] | None, status: str | None = None) -> str:
    user = _require(token, Permission.import_)
    if not files:
        return "Choose one or more photos first."
    payload = [(Path(f).name, Path(f).read_bytes()) for f in files]
    with session_scope() as session:
        report = import_uploads(session, served_project(session, user), payload, status=status)
    lines = [
        f"Added **{report.images_added}** photo(s); {report.images_skipped} already here; "
        f"{report.images_failed} could not be read."
    ]
    lines += [f"- {_md_escape(m)}" for m in report.messages[:20]]
    return "\n".join(lines)


def retrain(
    token: str,
    stages: list[str] | None = None,
    preset: str = "tiny",
    start_from: list[str] | None = None,
) -> str:
    user = _require(token, Permission.retrain)
    preset = preset or "tiny"
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
    except ServiceError as e:
        return f"Could not start retraining: {e}"
    picked = (job.params or {}).get("stages")
    what = ", ".join(picked) if picked else "the promoted stages (YOLO parts at first)"
    started = "".join(f"; {k} starts from {v}" for k, v in weights.items())
    return f"Retraining round queued as job {job.id}: {what}, {preset} preset{started}."


def weights_picker(token: str) -> dict:
    """The weights-picker's choices when the dashboard opens (the weights folder may change);
    none for a role that may not retrain."""
    user = _user(token)
    if user is None or not user_service.can(user, Permission.retrain):
        return gr.update(choices=[])
    return gr.update(choices=dashboard_service.start_weights_choices())


# ---------- the assistance back end (leads and admins) ----------


def _assistance_status(state: dict[str, Any]) -> str:
    line = f"In use: **{state['backend']}**: {_md_escape(state['reason'])}."
    if state["env"]:
        line += " Environment variables win over the choice here while they are set."
    return line


def assistance_view(token: str) -> tuple:
    """The assistance area: its choices and the back end in use; hidden from anyone who may
    not change it."""
    user = _user(token)
    if user is None or not user_service.can(user, assist_service.ASSISTANCE_PERMISSION):
        return gr.update(visible=False), gr.update(choices=[]), ""
    with session_scope() as session:
        if _not_a_member(session, user):
            return gr.update(visible=False), gr.update(choices=[]), ""
        try:
            state = assist_service.assistance_state(session, served_project(session, user))
        except ServiceError as e:
            return gr.update(visible=True), gr.update(), f"Assistance: {_md_escape(str(e))}"
    choices = [(c["label"], c["value"]) for c in state["choices"]]
    if state["choice"] not in {v for _, v in choices}:
        choices.append((f"{state['choice']} (no longer available)", state["choice"]))
    return (
        gr.update(visible=True),
        gr.update(choices=choices, value=state["choice"]),
        _assistance_status(state),
    )


def save_assistance(token: str, choice: str | None) -> str:
    user = _require(token, assist_service.ASSISTANCE_PERMISSION)
    try:
        with session_scope() as session:
            project = served_project(session, user)
            state = assist_service.set_assistance(session, project, choice or "", user=user)
    except ServiceError as e:
        return f"Not saved: {_md_escape(str(e))}"
    return f"Saved ({state['choice']}). " + _assistance_status(state)


# ---------- users and the projects they may work in (admins) ----------


def members_view(token: str) -> tuple:
    """The accounts with their projects, and the choices of the membership editor; the area
    stays hidden from anyone who may not manage users."""
    user = _user(token)
    if user is None or not user_service.can(user, Permission.users):
        return gr.update(visible=False), [], gr.update(choices=[]), gr.update(choices=[])
    with session_scope() as session:
        rows = user_service.users_with_projects(session)
        projects = [p.name for p in list_projects(session)]
    table = [
        [
            r["username"],
            r["role"],
            "active" if r["active"] else "disabled",
            "all (admin)" if r["role"] == "admin" else ", ".join(r["projects"]),
        ]
        for r in rows
    ]
    usernames = [r["username"] for r in rows]
    return (
        gr.update(visible=True),
        table,
        gr.update(choices=usernames),
        gr.update(choices=projects),
    )


def member_projects(token: str, username: str | None) -> Any:
    """The projects ``username`` is a member of, to edit."""
    _require(token, Permission.users)
    if not username:
        return gr.update(value=[])
    try:
        with session_scope() as session:
            access = user_service.project_access(session, username=username)
    except user_service.UserError as e:
        raise gr.Error(str(e)) from None
    return gr.update(value=access["projects"])


def set_member_projects(token: str, username: str | None, projects: list[str] | None) -> str:
    """Make ``username`` a member of exactly ``projects``."""
    _require(token, Permission.users)
    if not username:
        return "Choose a user first."
    try:
        with session_scope() as session:
            names = user_service.set_user_projects(
                session, username=username, projects=projects or []
            )
    except user_service.UserError as e:
        return _md_escape(str(e))
    listed = ", ".join(names) if names else "no project"
    return f"**{_md_escape(username)}** is a member of: {_md_escape(listed)}."


def build_ui() -> gr.Blocks:
    with gr.Blocks(
        title="Panelbeater",
        analytics_enabled=False,
        delete_cache=(CACHE_SWEEP_EVERY_S, CACHE_MAX_AGE_S),
    ) as demo:
        token = gr.State("")
        with gr.Column(visible=True, elem_id="pb-login") as login_box:
            gr.Markdown("## Panelbeater — sign in")
            username = gr.Textbox(label="User name", elem_id="pb-login-user")
            password = gr.Textbox(label="Password", type="password", elem_id="pb-login-password")
            login_btn = gr.Button("Sign in", variant="primary", elem_id="pb-login-button")
            login_msg = gr.Markdown(elem_id="pb-login-msg")
        with gr.Column(visible=False, elem_id="pb-main") as main_box:
            with gr.Row():
                whoami = gr.Markdown(elem_id="pb-whoami")
                logout_btn = gr.Button("Sign out", size="sm", scale=0, elem_id="pb-logout")
            with gr.Tabs():
                with gr.Tab("Workspace", id="workspace", elem_id="pb-tab-workspace"):
                    canvas = canvas_widget()
                with gr.Tab(
                    "Dashboard", id="dashboard", visible=False, elem_id="pb-tab-dashboard"
                ) as dash_tab:
                    refresh = gr.Button("Refresh", size="sm", elem_id="pb-dash-refresh")
                    summary = gr.Markdown(elem_id="pb-dash-summary")
                    with gr.Row():
                        by_status = gr.Dataframe(
                            headers=["status", "photos"],
                            label="Photos per status",
                            interactive=False,
                        )
                        by_group = gr.Dataframe(
                            headers=["group", "instances"],
                            label="Instances per group",
                            interactive=False,
                        )
                        by_class = gr.Dataframe(
                            headers=["class", "instances"],
                            label="Instances per class",
                            interactive=False,
                        )
                    throughput = gr.Dataframe(
                        headers=[
                            "annotator",
                            "photos",
                            "instances",
                            "active hours",
                            "photos/h",
                            "instances/h",
                        ],
                        label="Throughput per annotator (last 7 days)",
                        interactive=False,
                        elem_id="pb-dash-throughput",
                    )
                    plots = dashboard_panel.plot_panel()
                    tools = dashboard_panel.tools_panel(PREDICT_STAGES)
                    quality_panel.build(token, dash_tab, _require)
                    leases_panel.build(token, dash_tab, _require)
                    with gr.Row(elem_id="pb-export-filters"):
                        export_status = gr.Dropdown(
                            choices=EXPORT_STATUSES,
                            multiselect=True,
                            label="Export photos of status (none: all)",
                            elem_id="pb-export-status",
                        )
                        export_split = gr.Dropdown(
                            choices=[("any", ""), *[(x, x) for x in SPLITS]],
                            value="",
                            label="Split",
                            elem_id="pb-export-split",
                        )
                        export_group = gr.Dropdown(
                            choices=[("all", ""), *[(x, x) for x in GROUPS]],
                            value="",
                            label="Group",
                            elem_id="pb-export-group",
                        )
                    with gr.Row():
                        coco_btn = gr.Button("Export COCO", size="sm")
                        yolo_btn = gr.Button("Export YOLO (zip)", size="sm")
                        ls_btn = gr.Button("Export Label Studio", size="sm")
                    download = gr.File(label="Download", interactive=False)
                    with gr.Accordion("Add photos", open=True, elem_id="pb-upload"):
                        gr.Markdown(
                            "Upload photos here, or on the server run "
                            "`panelbeater import folder DIR` (or `import coco FILE --images DIR`)."
                        )
                        upload_files = gr.File(
                            file_count="multiple",
                            file_types=["image"],
                            label="Photos",
                            elem_id="pb-upload-files",
                        )
                        upload_status = gr.Dropdown(
                            choices=list(IMPORT_STATUSES),
                            value="new",
                            label="Status of the new photos",
                            info="A photo already here only moves forward; a rejected one stays.",
                            elem_id="pb-upload-status",
                        )
                        upload_btn = gr.Button(
                            "Add to project", size="sm", elem_id="pb-upload-button"
                        )
                        upload_msg = gr.Markdown(elem_id="pb-upload-msg")
                    label_import = import_panel()
                    with gr.Row():
                        retrain_stages = gr.CheckboxGroup(
                            choices=ROUND_STAGES,
                            label="Stages to retrain (none ticked: the promoted ones)",
                            elem_id="pb-retrain-stages",
                        )
                        retrain_preset = gr.Dropdown(
                            choices=list(PRESETS),
                            value="tiny",
                            label="Preset (base needs a GPU)",
                            elem_id="pb-retrain-preset",
                        )
                    retrain_weights = gr.Dropdown(
                        choices=[],
                        multiselect=True,
                        label="Start from weights you brought (optional; adds the stage to the "
                        "round; `panelbeater weights add` brings files)",
                        elem_id="pb-retrain-weights",
                    )
                    retrain_btn = gr.Button(
                        "Start retraining", variant="secondary", elem_id="pb-retrain"
                    )
                    retrain_msg = gr.Markdown(elem_id="pb-retrain-msg")
                    with gr.Accordion(
                        "Assistance", open=True, visible=False, elem_id="pb-assistance"
                    ) as assistance_box:
                        with gr.Row():
                            assistance_pick = gr.Dropdown(
                                choices=[],
                                label="Assisted drawing back end",
                                info="SAM/MobileSAM from the weights folder, assist_net, "
                                "GrabCut or auto; applies at the next click, no restart.",
                                elem_id="pb-assistance-choice",
                            )
                            assistance_save = gr.Button(
                                "Save", size="sm", scale=0, elem_id="pb-assistance-save"
                            )
                        assistance_msg = gr.Markdown(elem_id="pb-assistance-msg")
                    jobs = gr.Dataframe(
                        headers=[
                            "job",
                            "kind",
                            "status",
                            "stage",
                            "progress",
                            "epoch",
                            "loss",
                            "message",
                        ],
                        label="Background jobs (live)",
                        interactive=False,
                        elem_id="pb-dash-jobs",
                    )
                    with gr.Row():
                        job_pick = gr.Number(
                            label="Job id", precision=0, scale=0, elem_id="pb-job-pick"
                        )
                        job_show = gr.Button(
                            "Show its steps, full error and log", size="sm", elem_id="pb-job-show"
                        )
                    job_info = gr.Markdown(elem_id="pb-job-info")
                    jobs_timer = gr.Timer(2.0, active=False)  # started when the dashboard opens
                    with gr.Accordion(
                        "Users and their projects (admins)",
                        open=False,
                        visible=False,
                        elem_id="pb-admin-members",
                    ) as members_box:
                        members = gr.Dataframe(
                            headers=["user", "role", "state", "projects"],
                            label="Users",
                            interactive=False,
                            elem_id="pb-admin-members-table",
                        )
                        with gr.Row():
                            member_user = gr.Dropdown(
                                choices=[], label="User", elem_id="pb-admin-member-user"
                            )
                            member_projects_pick = gr.Dropdown(
                                choices=[],
                                multiselect=True,
                                label="Projects the user may work in",
                                elem_id="pb-admin-member-projects",
                            )
                        member_save = gr.Button(
                            "Set projects", size="sm", elem_id="pb-admin-member-save"
                        )
                        member_msg = gr.Markdown(elem_id="pb-admin-member-msg")
                with gr.Tab("Inspections", id="inspections", elem_id="pb-tab-inspections"):
                    from annotator.inspections_panel import inspections_panel

                    inspections_panel(token, _require)
                with gr.Tab("Help", id="help", elem_id="pb-tab-help"):
                    gr.Markdown("### Keyboard shortcuts\n\n" + shortcuts_markdown())

        outputs = [token, login_box, main_box, whoami, canvas, dash_tab, login_msg]
        for sign_in in (login_btn.click, password.submit):
            sign_in(login, [username, password], outputs).then(
                None, [canvas], None, js=START_SESSION_JS
            ).then(_clear_password, None, password)
        logout_btn.click(logout, [token], outputs).then(None, None, None, js=END_SESSION_JS)
        demo.load(restore, None, outputs)
        stale_msgs = [plots.version_msg, tools.predict_msg, tools.screen_msg]
        dash_outputs = [summary, by_status, by_group, by_class, throughput, *plots.outputs]
        dash_outputs += stale_msgs  # cleared by a refresh: they spoke of the state before it
        refresh.click(dashboard, [token], dash_outputs)
        dash_tab.select(dashboard, [token], dash_outputs)
        filters = [export_status, export_split, export_group]
        coco_btn.click(lambda t, *f: export_file(t, "coco", *f), [token, *filters], download)
        yolo_btn.click(lambda t, *f: export_file(t, "yolo", *f), [token, *filters], download)
        ls_btn.click(lambda t, *f: export_file(t, "label-studio", *f), [token, *filters], download)
        plots.promote.click(promote_version, [token, plots.version_pick], plots.version_msg).then(
            dashboard_after_action, [token], dash_outputs[:-3]
        )
        plots.rollback.click(rollback_version, [token, plots.version_pick], plots.version_msg).then(
            dashboard_after_action, [token], dash_outputs[:-3]
        )
        tools.predict.click(
            predict_photo, [token, tools.stage, tools.image_id, tools.threshold], tools.predict_msg
        )
        tools.screen.click(start_fraud_screen, [token], tools.screen_msg).then(
            jobs_table, [token], jobs
        )
        job_show.click(job_details, [token, job_pick], job_info)
        dash_tab.select(weights_picker, [token], retrain_weights)
        retrain_btn.click(
            retrain, [token, retrain_stages, retrain_preset, retrain_weights], retrain_msg
        ).then(jobs_table, [token], jobs)
        jobs_timer.tick(jobs_poll, [token], [jobs, jobs_timer], show_progress="hidden")
        dash_tab.select(jobs_table, [token], jobs).then(
            lambda: gr.Timer(active=True), None, jobs_timer
        )
        assistance_outputs = [assistance_box, assistance_pick, assistance_msg]
        dash_tab.select(assistance_view, [token], assistance_outputs)
        assistance_save.click(save_assistance, [token, assistance_pick], assistance_msg)
        members_outputs = [members_box, members, member_user, member_projects_pick]
        dash_tab.select(members_view, [token], members_outputs)
        member_user.change(member_projects, [token, member_user], member_projects_pick)
        member_save.click(
            set_member_projects, [token, member_user, member_projects_pick], member_msg
        ).then(members_view, [token], members_outputs)
        upload_btn.click(upload_photos, [token, upload_files, upload_status], upload_msg).then(
            dashboard, [token], dash_outputs
        )
        label_import.button.click(
            import_labels, [token, *label_import.inputs], label_import.message
        ).then(dashboard, [token], dash_outputs)
    return demo
