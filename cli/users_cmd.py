"""``panelbeater user add|list|passwd|disable|enable|join|leave|projects``: accounts for the
web UI and the REST API, and the projects each may work in.

A user who is not an admin works only in the projects they are a member of: ``user add NAME
--project P`` (repeatable; without it, the project this data dir serves), ``user join NAME
--project P``, ``user leave NAME --project P``, ``user projects NAME``.

Passwords are read from a prompt (typed twice, never echoed) or, for scripts, from standard
input with ``--password-stdin``; they are never taken as a command-line argument, which would
leave them in the shell history and the process list.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from cli.common import fail, store_session
from db.models import Role

user_app = typer.Typer(
    help="Manage users: annotator, reviewer, fraud_analyst, lead, admin.", no_args_is_help=True
)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("--password-stdin was given but standard input was empty; pipe the password in.")
        return password
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Repeat password: ")
    if first != second:
        fail("the two passwords differ; nothing was changed.")
    return first


_PROJECT_HELP = "A project the user may work in (repeatable)."


@user_app.command("add")
def add(
    name: str = typer.Argument(..., help="User name (no spaces)."),
    role: str = typer.Option(
        "annotator", "--role", help="annotator, reviewer, fraud_analyst, lead or admin."
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
    projects: list[str] = typer.Option(
        None, "--project", help=_PROJECT_HELP + " Default: the project this data dir serves."
    ),
) -> None:
    """Create a user; asks for the password (or reads it from stdin)."""
    from services.accounts.projects import member_project_names
    from services.accounts.users import UserError, create_user

    if role not in {r.value for r in Role}:
        fail(f"unknown role {role!r}; use one of: {', '.join(r.value for r in Role)}.")
    password = _read_password(password_stdin)
    with store_session(UserError) as session:
        user = create_user(
            session, username=name, password=password, role=role, projects=projects or None
        )
        typer.echo(
            f"created user {user.username!r} with role {user.role.value}, member of "
            f"{_names(member_project_names(session, user), user.role)}"
        )


def _names(names: list[str], role: Role | None = None) -> str:
    text = ", ".join(names) if names else "no project"
    return text + (" (admins may work in every project)" if role == Role.admin else "")


def _change_membership(change, name: str, projects: list[str]) -> None:
    """Apply ``change`` (join_projects or leave_projects) and print the user's projects."""
    from services.accounts.users import UserError

    with store_session(UserError) as session:
        names = change(session, username=name, projects=projects)
    typer.echo(f"{name!r} is a member of {_names(names)}")


UserName = Annotated[str, typer.Argument(help="User name.")]
ProjectNames = Annotated[list[str], typer.Option("--project", help=_PROJECT_HELP)]


@user_app.command("join")
def join(name: UserName, projects: ProjectNames) -> None:
    """Make a user a member of one or more projects."""
    from services.accounts.users import join_projects

    _change_membership(join_projects, name, projects)


@user_app.command("leave")
def leave(name: UserName, projects: ProjectNames) -> None:
    """End a user's membership of one or more projects."""
    from services.accounts.users import leave_projects

    _change_membership(leave_projects, name, projects)


@user_app.command("projects")
def projects_of(name: str = typer.Argument(..., help="User name.")) -> None:
    """The projects a user is a member of."""
    from services.accounts.users import UserError, get_user, user_projects

    with store_session(UserError) as session:
        names = user_projects(session, username=name)
        role = get_user(session, name).role
    typer.echo(_names(names, role))


@user_app.command("passwd")
def passwd(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Set a new password for a user."""
    from services.accounts.users import UserError, set_password

    password = _read_password(password_stdin)
    with store_session(UserError) as session:
        set_password(session, username=name, password=password)
    typer.echo(f"password of {name!r} changed; its open sessions were signed out")


def _switch(name: str, active: bool) -> None:
    from services.accounts.users import UserError, disable_user, enable_user

    with store_session(UserError) as session:
        (enable_user if active else disable_user)(session, username=name)
    typer.echo(
        f"enabled {name!r}" if active else f"disabled {name!r}; its open sessions were signed out"
    )


@user_app.command("disable")
def disable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Disable a user and sign it out everywhere at once (its tokens are revoked)."""
    _switch(name, active=False)


@user_app.command("enable")
def enable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Let a disabled user sign in again."""
    _switch(name, active=True)


@user_app.command("list")
def list_users() -> None:
    """Every user with its role, state and projects."""
    from services.accounts.users import FIRST_START_MESSAGE, users_with_projects

    with store_session() as session:
        users = users_with_projects(session)
    if not users:
        typer.echo(FIRST_START_MESSAGE)
    for u in users:
        state = "active" if u["active"] else "disabled"
        where = "all projects" if u["role"] == Role.admin.value else _names(u["projects"])
        typer.echo(f"{u['username']}\t{u['role']}\t{state}\t{where}")


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
