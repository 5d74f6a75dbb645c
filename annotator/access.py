"""Who a UI token belongs to and what they may do: the check at the top of every Gradio handler.

Gradio endpoints can be called directly, so hiding a tab or an area is not enough; each
handler looks its token up here, as the REST routes do in ``api.deps``.
"""

from __future__ import annotations

import gradio as gr
from sqlmodel import Session

from db.models import User
from db.session import session_scope
from services.accounts import users as user_service
from services.accounts.projects import served_project
from services.accounts.users import Permission
from services.errors import ServiceError


def token_user(token: str | None) -> User | None:
    """The user ``token`` signs in, or None for an empty, unknown or expired token."""
    if not token:
        return None
    with session_scope() as session:
        return user_service.user_for_token(session, token)


def not_a_member(session: Session, user: User) -> str | None:
    """Why ``user`` may not work in the served project, or None when they may."""
    try:
        served_project(session, user)
    except ServiceError as e:
        return str(e)
    return None


def require(token: str, permission: Permission) -> User:
    """The signed-in member of the served project holding ``permission``; a ``gr.Error``
    the page shows otherwise."""
    user = token_user(token)
    if user is None:
        raise gr.Error("Your session expired; sign in again.")
    if not user_service.can(user, permission):
        raise gr.Error(f"Your role ({user.role.value}) may not use the dashboard.")
    with session_scope() as session:
        refused = not_a_member(session, user)
    if refused:
        raise gr.Error(refused)
    return user


def md_escape(text: str) -> str:
    """``text`` shown literally in Markdown (a user name or an error may hold ``*`` or ``_``)."""
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|&" else c for c in text)
