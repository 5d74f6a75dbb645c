"""``panelbeater user add|list|passwd``: accounts for the web UI and the REST API.

Passwords are read from a prompt (typed twice, never echoed) or, for scripts, from standard
input with ``--password-stdin``; they are never taken as a command-line argument, which would
leave them in the shell history and the process list.
"""

from __future__ import annotations

import getpass
import sys

import typer

from db.models import Role

user_app = typer.Typer(
    help="Manage users: annotator, reviewer, fraud_analyst, lead, admin.", no_args_is_help=True
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _fail("--password-stdin was given but standard input was empty; pipe the password in.")
        return password
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Repeat password: ")
    if first != second:
        _fail("the two passwords differ; nothing was changed.")
    return first


def _open() -> None:
    from db.session import init_db

    init_db()


@user_app.command("add")
def add(
    name: str = typer.Argument(..., help="User name (no spaces)."),
    role: str = typer.Option(
        "annotator", "--role", help="annotator, reviewer, fraud_analyst, lead or admin."
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Create a user; asks for the password (or reads it from stdin)."""
    from db.session import session_scope
    from services.users import UserError, create_user

    if role not in {r.value for r in Role}:
        _fail(f"unknown role {role!r}; use one of: {', '.join(r.value for r in Role)}.")
    password = _read_password(password_stdin)
    _open()
    try:
        with session_scope() as session:
            user = create_user(session, username=name, password=password, role=role)
            typer.echo(f"created user {user.username!r} with role {user.role.value}")
    except UserError as e:
        _fail(str(e))


@user_app.command("passwd")
def passwd(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Set a new password for a user."""
    from db.session import session_scope
    from services.users import UserError, set_password

    password = _read_password(password_stdin)
    _open()
    try:
        with session_scope() as session:
            set_password(session, username=name, password=password)
    except UserError as e:
        _fail(str(e))
    typer.echo(f"password of {name!r} changed")


@user_app.command("list")
def list_users() -> None:
    """Every user with its role."""
    from sqlmodel import select

    from db.models import User
    from db.session import session_scope

    _open()
    with session_scope() as session:
        users = session.exec(select(User).order_by(User.username)).all()
        if not users:
            from services.users import FIRST_START_MESSAGE

            typer.echo(FIRST_START_MESSAGE)
        for u in users:
            typer.echo(f"{u.username}\t{u.role.value}\t{'active' if u.active else 'disabled'}")


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
