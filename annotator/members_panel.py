"""The dashboard's "Users and their projects" area (admins): every account with its projects,
and an editor that sets the projects one user may work in, through
``services.accounts.users``; hidden from anyone who may not manage users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from annotator.access import md_escape, require, token_user
from db.session import session_scope
from services.accounts import users as user_service
from services.accounts.projects import list_projects
from services.accounts.users import Permission


def members_view(token: str) -> tuple:
    """The accounts with their projects, and the choices of the membership editor; the area
    stays hidden from anyone who may not manage users."""
    user = token_user(token)
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
    require(token, Permission.users)
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
    require(token, Permission.users)
    if not username:
        return "Choose a user first."
    try:
        with session_scope() as session:
            names = user_service.set_user_projects(
                session, username=username, projects=projects or []
            )
    except user_service.UserError as e:
        return md_escape(str(e))
    listed = ", ".join(names) if names else "no project"
    return f"**{md_escape(username)}** is a member of: {md_escape(listed)}."


@dataclass
class MembersPanel:
    box: gr.Accordion
    table: gr.Dataframe
    user: gr.Dropdown
    projects: gr.Dropdown
    save: gr.Button
    message: gr.Markdown

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What :func:`members_view` fills, in its order."""
        return [self.box, self.table, self.user, self.projects]


def members_panel() -> MembersPanel:
    """The area, hidden until :func:`members_view` shows it, built in the caller's Blocks."""
    with gr.Accordion(
        "Users and their projects (admins)",
        open=False,
        visible=False,
        elem_id="pb-admin-members",
    ) as box:
        table = gr.Dataframe(
            headers=["user", "role", "state", "projects"],
            label="Users",
            interactive=False,
            elem_id="pb-admin-members-table",
        )
        with gr.Row():
            user = gr.Dropdown(choices=[], label="User", elem_id="pb-admin-member-user")
            projects = gr.Dropdown(
                choices=[],
                multiselect=True,
                label="Projects the user may work in",
                elem_id="pb-admin-member-projects",
            )
        save = gr.Button("Set projects", size="sm", elem_id="pb-admin-member-save")
        message = gr.Markdown(elem_id="pb-admin-member-msg")
    return MembersPanel(box, table, user, projects, save, message)


def wire(token: gr.State, dash_tab: gr.Tab, panel: MembersPanel) -> None:
    dash_tab.select(members_view, [token], panel.outputs)
    panel.user.change(member_projects, [token, panel.user], panel.projects)
    panel.save.click(set_member_projects, [token, panel.user, panel.projects], panel.message).then(
        members_view, [token], panel.outputs
    )
