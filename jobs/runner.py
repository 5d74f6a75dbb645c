"""Running one job inside a worker: state transitions, progress, cancellation, heartbeat, logs.

State machine of ``Job.status``: queued -> running -> completed | failed | cancelled; progress
and cancellation are :mod:`jobs.context`'s.

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
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from core.config import get_settings
from db.models import Job, JobStatus, utcnow
from db.session import session_scope
from jobs.context import JobCancelled, JobContext, update_running
from jobs.tasks import HANDLERS

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


def job_log_path(job_id: int) -> Path:
    d = get_settings().data_dir / "jobs"
    d.mkdir(parents=True, exist_ok=True)
    return (d / f"job-{job_id}.log").resolve()


def _worker_info() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


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
    return update_running(job_id, status=status, finished_at=utcnow(), **values)


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
