"""Label Studio's ML backend protocol over HTTP, for one project (``panelbeater ls-backend``).

Routes: ``GET /health`` (and ``/``) open to anyone; ``POST /setup``, ``/predict`` and
``/webhook`` need a member of the project, by Basic auth (Label Studio's ML backend form) or a
bearer token (a webhook's headers); anything else is answered 401. The rules live in
``services.integrations``; a webhook's pull runs after its answer is sent, since Label Studio
waits one second for a webhook (``WEBHOOK_TIMEOUT``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import BackgroundTasks, Body, Depends, FastAPI, HTTPException, Request, status
from sqlmodel import Session

from api.deps import db_session, service_errors
from api.middleware import BodyLimit, BodyLimitMiddleware
from core.config import get_settings
from db.models import Project, User
from services.accounts.projects import get_or_create_project
from services.integrations import label_studio_backend as backend
from services.integrations import ls_pull
from services.integrations.ls_images import ImageFetcher

log = logging.getLogger("panelbeater.ls_backend")
#: One pull at a time: a burst of webhooks writes to the store in turn.
_pull_lock = threading.Lock()


def caller(request: Request, session: Session = Depends(db_session)) -> tuple[User, Project]:
    """The calling member and the project served; 401 for anyone else."""
    project = get_or_create_project(session)
    with service_errors():
        user = backend.caller(
            session,
            project,
            request.headers.get("authorization", ""),
            address=request.client.host if request.client else None,
        )
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"Give the name and password of a member of project {project.name!r} in "
            "the ML backend's basic auth fields, or a bearer token of one (POST /api/login).",
            headers={"WWW-Authenticate": 'Basic realm="Panelbeater", charset="UTF-8"'},
        )
    return user, project


def _pull(project_id: int, user_id: int, pull: ls_pull.Pull) -> None:
    """Pull the webhook's annotations in, then start a round when the lead's rule says so."""
    from db.session import session_scope
    from jobs.service import start_round

    with _pull_lock:
        try:
            with session_scope() as session:
                project = session.get(Project, project_id)
                report = ls_pull.pull_annotations(
                    session, project, pull, ImageFetcher(get_settings())
                )
            with session_scope() as session:
                project, user = session.get(Project, project_id), session.get(User, user_id)
                due, report.round = ls_pull.round_due(session, project, user)
                if due:
                    job = start_round(
                        session, created_by=f"label-studio:{user.username}", project=project
                    )
                    report.round += f" (job {job.id})"
            log.info("label studio %s: %s", pull.event, report.as_dict())
        except Exception:  # after the answer: there is nobody left to tell but the log
            log.exception("label studio %s of task %s: the pull failed", pull.event, pull.task_id)


def create_ls_backend() -> FastAPI:
    """The backend's app for the settings' project (``project_name``)."""
    app = FastAPI(
        title="Panelbeater ML backend for Label Studio",
        description="Label Studio's ML backend protocol: /health, /setup, /predict, /webhook.",
    )
    fetcher: list[ImageFetcher] = []

    def images() -> ImageFetcher:
        if not fetcher:
            fetcher.append(ImageFetcher(get_settings()))
        return fetcher[0]

    @app.get("/")
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "UP", "model_class": "Panelbeater"}

    @app.post("/setup")
    def setup(
        body: Any = Body(...),
        who: tuple[User, Project] = Depends(caller),
        session: Session = Depends(db_session),
    ) -> dict[str, str]:
        with service_errors():
            return backend.setup(session, who[1], body)

    @app.post("/predict")
    def predict(
        body: Any = Body(...),
        who: tuple[User, Project] = Depends(caller),
        session: Session = Depends(db_session),
    ) -> dict[str, Any]:
        with service_errors():
            return backend.predict(session, who[1], body, images())

    @app.post("/webhook", status_code=status.HTTP_201_CREATED)
    def webhook(
        background: BackgroundTasks,
        body: Any = Body(...),
        who: tuple[User, Project] = Depends(caller),
    ) -> dict[str, Any]:
        with service_errors():
            pull = ls_pull.read_webhook(body)
        if pull is None:
            return {"status": "ignored", "event": body.get("action")}
        background.add_task(_pull, who[1].id, who[0].id, pull)
        return {"status": "accepted", "event": pull.event, "task": pull.task_id}

    settings = get_settings()
    app.add_middleware(
        BodyLimitMiddleware,
        default=BodyLimit(
            settings.max_json_body_bytes, "max_json_body_bytes", "Send fewer tasks at a time."
        ),
    )
    return app
