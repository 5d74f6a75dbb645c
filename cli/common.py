"""What every CLI command module shares: stopping with a sentence, and opening the store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlmodel import Session


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` in red on stderr and stop with exit status ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def open_project() -> None:
    """Bring the store's schema up to date before a command uses it."""
    from db.session import init_db

    init_db()


@contextmanager
def store_session(*errors: type[Exception]) -> Iterator[Session]:
    """Open the store and yield a session that commits when the block succeeds; one of
    ``errors`` raised in the block rolls it back and stops the command with its sentence."""
    from db.session import session_scope

    open_project()
    try:
        with session_scope() as session:
            yield session
    except errors as e:
        fail(str(e))
