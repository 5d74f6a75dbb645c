"""``panelbeater ls-backend``: serve Label Studio's ML backend protocol for one project."""

from __future__ import annotations

import typer

from core.config import configure, env_name, get_settings


def ls_backend(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(9090, help="Port (Label Studio's ML backends use 9090)."),
    project: str | None = typer.Option(
        None, "--project", help="The project to serve (default: the global --project)."
    ),
    worker: bool = typer.Option(
        False,
        "--worker/--no-worker",
        help="Start a job worker too, for the rounds webhooks start (else `panelbeater serve` "
        "or `panelbeater worker` runs them).",
    ),
) -> None:
    """Serve Label Studio's ML backend: pre-annotation, interactive polygons, webhooks."""
    import uvicorn

    from api.ls_backend import create_ls_backend
    from app import proxy_options
    from cli.common import open_project

    if project is not None:
        configure(**{**get_settings().model_dump(), "project_name": project})
    settings = get_settings()
    open_project()
    if not settings.label_studio_url:
        typer.secho(
            f"warning: {env_name('label_studio_url')} (or LABEL_STUDIO_URL) is not set; the "
            "backend cannot read task images until it is",
            fg=typer.colors.YELLOW,
            err=True,
        )
    proc = None
    if worker:
        from jobs.worker import start_worker_process

        proc = start_worker_process(settings)
    typer.secho(
        f"Panelbeater's ML backend for project {settings.project_name!r}: connect Label Studio "
        f"to http://{host}:{port}",
        fg=typer.colors.GREEN,
    )
    try:
        uvicorn.run(
            create_ls_backend(), host=host, port=port, log_level="info", **proxy_options(settings)
        )
    finally:
        if proc is not None:
            proc.terminate()


def register(app: typer.Typer) -> None:
    app.command("ls-backend")(ls_backend)
