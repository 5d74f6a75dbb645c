"""The web app: FastAPI with the REST API under /api and the Gradio UI mounted at /ui.

``python app.py`` serves it like ``panelbeater serve``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from api.middleware import BodyLimit
from core.config import Settings, get_settings

log = logging.getLogger("panelbeater")


def _first_start_hint() -> None:
    """With no users yet, say how to create the first admin (there is no default password)."""
    from db.session import session_scope
    from services.accounts.users import count_users, first_start_message

    with session_scope() as session:
        if count_users(session) == 0:
            print(first_start_message(get_settings().data_dir), flush=True)


def proxy_options(settings: Settings) -> dict[str, object]:
    """uvicorn's options: it reads no forwarded header, whatever ``settings`` say. The app's
    ``api.hosts.HostGuard`` believes them from the ``forwarded_allow_ips`` proxies only; were
    uvicorn to apply them first, the guard could no longer tell which peer sent them."""
    return {"proxy_headers": False}


def _withdraw_predictions_below_the_bar() -> None:
    """A bar raised in the settings since the last start withdraws the pending predictions
    of versions now below it (``services.training.withdrawal``)."""
    from db.session import session_scope
    from services.training.withdrawal import sync_offered_predictions

    with session_scope() as session:
        sync_offered_predictions(session)


def create_app(*, start_worker: bool = False, ui: bool = True) -> FastAPI:
    """Build the app on the current settings; migrations run here, before serving.

    ``ui=False`` leaves the Gradio UI out and keeps everything else (the REST API, its
    middleware and the commit hooks): the server the load and durability benches drive,
    which starts in 2 s instead of Gradio's 10."""
    from db.session import init_db
    from models.runtime import apply_process_settings

    settings = get_settings()
    apply_process_settings(settings)  # also when run as `uvicorn app:app`, without the CLI
    from jobs.autotrain import listen as queue_autotraining_on_commit
    from jobs.slot_predictions import listen as preannotate_slot_photos_on_commit

    queue_autotraining_on_commit()
    preannotate_slot_photos_on_commit()
    init_db()
    _withdraw_predictions_below_the_bar()
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

    from api.errors import install_error_handlers
    from api.router import api_router

    fastapi_app.include_router(api_router, prefix="/api")
    install_error_handlers(fastapi_app)

    @fastapi_app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    if ui:
        return _with_ui(fastapi_app, settings)
    return _guarded(fastapi_app, settings, ui_path=UI_PATH_WITHOUT_UI)


#: Where the UI would be (``annotator.session.UI_PATH``, not imported: it imports Gradio): the
#: security headers treat that path as the UI's even when the UI is left out.
UI_PATH_WITHOUT_UI = "/ui"

#: The routes that take files, under /api: photos, and a dataset's label file with its photos.
API_UPLOAD_PATHS = ("/api/images/upload", "/api/imports")
#: Gradio's own upload route, under the UI's path (the dashboard's imports, inspection photos).
UI_UPLOAD_PATH = "/gradio_api/upload"


def body_limits(settings: Settings, *, ui_path: str) -> tuple[BodyLimit, dict[str, BodyLimit]]:
    """Each route's request-body limit (``api.middleware.BodyLimitMiddleware``): the default,
    for JSON, and the routes that differ. Only the routes that take files may send
    ``max_request_bytes``; a sign-in, which anyone may send, holds a name and a password.
    """
    upload = BodyLimit(
        settings.max_request_bytes, "max_request_bytes", "Send fewer or smaller files at a time."
    )
    login = BodyLimit(
        settings.max_login_body_bytes,
        "max_login_body_bytes",
        'A sign-in sends {"username": ..., "password": ...} and nothing else.',
    )
    json_body = BodyLimit(
        settings.max_json_body_bytes,
        "max_json_body_bytes",
        "Send less at a time (files go to /api/images/upload or /api/imports).",
    )
    routes = dict.fromkeys((*API_UPLOAD_PATHS, ui_path.rstrip("/") + UI_UPLOAD_PATH), upload)
    routes["/api/login"] = login
    return json_body, routes


def _with_ui(fastapi_app: FastAPI, settings: Settings) -> FastAPI:
    """Mount the Gradio UI at /ui behind its session guard, then :func:`_guarded`."""
    import gradio as gr

    from annotator import session as ui_session
    from annotator.app import anonymous_fn_ids, build_ui, mount_options

    blocks = build_ui()
    fastapi_app.include_router(ui_session.router)  # before the mount, which would take its path
    gr.mount_gradio_app(fastapi_app, blocks, path=ui_session.UI_PATH, **mount_options())
    fastapi_app.add_middleware(ui_session.UiSessionGuard, anonymous_fns=anonymous_fn_ids(blocks))
    return _guarded(fastapi_app, settings, ui_path=ui_session.UI_PATH)


def _guarded(fastapi_app: FastAPI, settings: Settings, *, ui_path: str) -> FastAPI:
    """Wrap every route in the same-origin CORS policy, the body limit, the host check and
    the security headers (the last added runs first)."""
    from fastapi.middleware.cors import CORSMiddleware

    from api.hosts import HostGuard
    from api.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware

    # No origin is allowed across: the UI's page is the app's own origin and needs no CORS
    # header. Gradio's own CORS (which lets a page on another port of localhost, or any
    # origin on another host, read with credentials) stands aside when the parent app has a
    # CORSMiddleware (gr.mount_gradio_app's documentation).
    fastapi_app.add_middleware(CORSMiddleware, allow_origins=())
    default, routes = body_limits(settings, ui_path=ui_path)
    fastapi_app.add_middleware(BodyLimitMiddleware, default=default, routes=routes)
    fastapi_app.add_middleware(
        HostGuard, allowed_hosts=settings.host_names, proxies=settings.forwarded_allow_ips
    )
    fastapi_app.add_middleware(SecurityHeadersMiddleware, ui_path=ui_path)
    return fastapi_app


if __name__ == "__main__":
    import uvicorn

    s = get_settings()
    print(f"Panelbeater is starting: open http://{s.host}:{s.port}/ui", flush=True)
    uvicorn.run(create_app(start_worker=True), host=s.host, port=s.port, **proxy_options(s))
