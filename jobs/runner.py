"""Running one job inside a worker: state transitions, progress, cancellation, heartbeat, logs.

State machine of ``Job.status``: queued -> running -> completed | failed | cancelled.
Only conditional updates (``WHERE status = 'running'``) write progress, so a cancel from the
web process (which sets ``cancelled``) is never overwritten; the running job notices it at its
next progress report and stops (:class:`JobCancelled`).

A running job carries ``result["worker"] = {host, pid, heartbeat}``; a heartbeat thread
refreshes it. :func:`recover_stale_jobs` marks a running job failed (and retryable) when its
worker process is gone (same host) or its heartbeat is older than ``stale_after_s``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from core.config import get_settings
from db.models import Job, JobStatus, utcnow
from db.session import session_scope

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


class JobCancelled(Exception):
    """Raised inside a job when someone cancelled it."""


def job_log_path(job_id: int) -> Path:
    d = get_settings().data_dir / "jobs"
    d.mkdir(parents=True, exist_ok=True)
    return (d / f"job-{job_id}.log").resolve()


def _worker_info() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


def _update_running(job_id: int, **values: Any) -> bool:
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
        if not _update_running(self.job_id, **values):
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def check_cancelled(self) -> None:
        with session_scope() as s:
            status = s.exec(select(Job.status).where(Job.id == self.job_id)).one()
        if status != JobStatus.running:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def progress_callback(self, stage: str, span: tuple[float, float] = (0.0, 1.0)) -> Callable:
        """A ``progress(step, total, info)`` callable (the model stages' signature) that maps
        ``step/total`` into ``span`` of this job's progress and forwards epoch and loss."""
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


def _heartbeat(job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            with session_scope() as s:
                job = s.get(Job, job_id)
                if job is None or job.status != JobStatus.running:
                    return
                job.result = {**(job.result or {}), "worker": _worker_info()}
                s.add(job)
        except Exception:  # a missed heartbeat only delays stale detection
            log.exception("heartbeat for job %s failed", job_id)


def execute_job(job_id: int) -> None:
    """Run job ``job_id`` in this process (called by the Huey task)."""
    from jobs.tasks import HANDLERS

    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            log.warning("job %s no longer exists; skipping", job_id)
            return
        if job.status != JobStatus.queued:
            log.info("job %s is %s, not queued; skipping", job_id, job.status.value)
            return
        path = job_log_path(job_id)
        job.status = JobStatus.running
        job.started_at = utcnow()
        job.finished_at = None
        job.attempts = (job.attempts or 0) + 1
        job.error = None
        job.progress = 0.0
        job.log_path = str(path)
        job.result = {"worker": _worker_info()}
        s.add(job)
        kind, params, attempt = job.kind, dict(job.params or {}), job.attempts

    logger = logging.getLogger(f"panelbeater.job.{job_id}")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.info("job %s (%s) attempt %s started with %s", job_id, kind, attempt, params)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(job_id, stop), daemon=True)
    beat.start()
    ctx = JobContext(job_id, params, logger)
    try:
        fn = HANDLERS.get(kind)
        if fn is None:
            raise ValueError(
                f"unknown job kind {kind!r}; valid kinds: {', '.join(sorted(HANDLERS))}"
            )
        result = fn(ctx, **params)
        stop.set()
        beat.join()
        done = _finish(
            job_id, JobStatus.completed, result=result or {}, progress=1.0, message="done"
        )
        logger.info("completed: %s" if done else "finished after being cancelled: %s", result)
    except JobCancelled:
        stop.set()
        beat.join()
        logger.info("cancelled")
        with session_scope() as s:
            job = s.get(Job, job_id)
            job.finished_at = utcnow()
            job.result = {k: v for k, v in (job.result or {}).items() if k != "worker"}
            s.add(job)
    except Exception as e:
        stop.set()
        beat.join()
        logger.error("failed:\n%s", traceback.format_exc())
        _finish(job_id, JobStatus.failed, error=f"{type(e).__name__}: {e}")
    finally:
        logger.removeHandler(handler)
        handler.close()


def _finish(job_id: int, status: JobStatus, **values: Any) -> bool:
    values.setdefault("result", {})
    return _update_running(job_id, status=status, finished_at=utcnow(), **values)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours (killed, not yet reaped) counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def recover_stale_jobs(*, stale_after_s: float = STALE_AFTER_S) -> list[int]:
    """Mark running jobs whose worker died as failed (retryable). Returns their ids."""
    host = socket.gethostname()
    now = time.time()
    failed = []
    with session_scope() as s:
        for job in s.exec(select(Job).where(Job.status == JobStatus.running)).all():
            w = (job.result or {}).get("worker") or {}
            dead = (
                w.get("host") == host and isinstance(w.get("pid"), int) and not _pid_alive(w["pid"])
            )
            silent = now - float(w.get("heartbeat") or 0) > stale_after_s
            if not (dead or silent):
                continue
            why = (
                f"worker process {w.get('pid')} on {host} died"
                if dead
                else f"no heartbeat from worker {w.get('host')}:{w.get('pid')} for {stale_after_s:.0f} s"
            )
            res = s.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == JobStatus.running)
                .values(
                    status=JobStatus.failed,
                    finished_at=utcnow(),
                    error=f"{why} while the job was {job.stage or 'running'}; "
                    f"nothing it produced was registered. Retry it with POST /api/jobs/{job.id}/retry.",
                )
            )
            if res.rowcount:
                failed.append(job.id)
    return failed
