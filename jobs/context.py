"""What a running job holds: progress reports that double as cancellation points.

Only conditional updates (``WHERE status = 'running'``) write progress, so a cancel from the
web process (which sets ``cancelled``) is never overwritten; the running job notices it at its
next progress report and stops (:class:`JobCancelled`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from db.models import Job, JobStatus, Project
from db.session import session_scope

#: ``progress(step, total, info)``: the model stages' progress signature.
Progress = Callable[[int, int, dict[str, Any]], None]


class JobCancelled(Exception):
    """Raised inside a job when someone cancelled it."""


def update_running(job_id: int, **values: Any) -> bool:
    """Write ``values`` only if the job is still running; False when it is not (cancelled)."""
    with session_scope() as s:
        res = s.execute(
            update(Job).where(Job.id == job_id, Job.status == JobStatus.running).values(**values)
        )
        return res.rowcount > 0


class JobContext:
    """Handed to a job's function: report progress, log, and check for cancellation.

    ``report`` raises :class:`JobCancelled` once the job has been cancelled, so every progress
    report is also a cancellation point.
    """

    def __init__(self, job_id: int, params: dict[str, Any], logger: logging.Logger):
        self.job_id = job_id
        self.params = params
        self.log = logger
        self._last_write = 0.0

    def report(
        self,
        *,
        stage: str | None = None,
        progress: float | None = None,
        epoch: int | None = None,
        loss: float | None = None,
        message: str | None = None,
        force: bool = False,
    ) -> None:
        values: dict[str, Any] = {}
        if stage is not None:
            values["stage"] = stage
        if progress is not None:
            values["progress"] = float(min(max(progress, 0.0), 1.0))
        if epoch is not None:
            values["epoch"] = int(epoch)
        if loss is not None:
            values["loss"] = float(loss)
        if message is not None:
            values["message"] = message
            self.log.info(message)
        now = time.monotonic()
        # Throttle database writes (a training loop may report per batch); stage changes and
        # messages always go through.
        if not force and stage is None and message is None and now - self._last_write < 0.5:
            self.check_cancelled()
            return
        self._last_write = now
        if not update_running(self.job_id, **values):
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def project(self, session: Session) -> Project:
        """The project this job was started in (a job from before jobs had projects: the
        project the settings serve)."""
        job = session.get(Job, self.job_id)
        if job is not None and job.project_id is not None:
            project = session.get(Project, job.project_id)
            if project is not None:
                return project
        from services.accounts.projects import get_or_create_project

        return get_or_create_project(session)

    def check_cancelled(self) -> None:
        with session_scope() as s:
            status = s.exec(select(Job.status).where(Job.id == self.job_id)).one()
        if status != JobStatus.running:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def progress_callback(self, stage: str, span: tuple[float, float] = (0.0, 1.0)) -> Progress:
        """A ``progress(step, total, info)`` callable that maps ``step/total`` into ``span``
        of this job's progress and forwards epoch and loss."""
        lo, hi = span

        def cb(step: int, total: int, info: dict[str, Any] | None = None) -> None:
            info = info or {}
            frac = step / total if total else 0.0
            loss = info.get("loss")
            self.report(
                stage=None,
                progress=lo + (hi - lo) * frac,
                epoch=info.get("epoch"),
                loss=float(loss) if isinstance(loss, (int, float)) else None,
            )

        self.report(stage=stage, progress=lo)
        return cb
