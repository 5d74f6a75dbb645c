"""The web app: FastAPI with the REST API under /api and the Gradio UI mounted at /ui.

``python app.py`` serves it like ``panelbeater serve``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from core.config import get_settings

log = logging.getLogger("panelbeater")


def _first_start_hint() -> None:
    """With no users yet, say how to create the first admin (there is no default password)."""
    from db.session import session_scope
    from services.users import FIRST_START_MESSAGE, count_users

    with session_scope() as session:
        if count_users(session) == 0:
            print(FIRST_START_MESSAGE, flush=True)


def create_app(*, start_worker: bool = False) -> FastAPI:
    """Build the app on the current settings; migrations run here, before serving."""
    from db.session import init_db

    settings = get_settings()
    init_db()
    _first_start_hint()
    worker = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        nonlocal worker
        if start_worker and settings.start_worker:
            try:
                from jobs.worker import start_worker_process
            except ImportError:
                log.warning("no job worker available; background jobs will wait")
            else:
                worker = start_worker_process(settings)
        yield
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except Exception:
                worker.kill()

    fastapi_app = FastAPI(
        title="Panelbeater",
        description="Label car damage, fake damage and car parts with models in the loop.",
        version="0.1.0",
        lifespan=lifespan,
    )

    from api.router import api_router

    fastapi_app.include_router(api_router, prefix="/api")

    @fastapi_app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    import gradio as gr

    from annotator.app import build_ui

    return gr.mount_gradio_app(fastapi_app, build_ui(), path="/ui", **_gradio_mount_options())


def _gradio_mount_options() -> dict:
    try:
        from annotator.app import mount_options
    except ImportError:
        return {}
    return mount_options()


if __name__ == "__main__":
    import uvicorn

    s = get_settings()
    print(f"Panelbeater is starting: open http://{s.host}:{s.port}/ui", flush=True)
    uvicorn.run(create_app(start_worker=True), host=s.host, port=s.port)
