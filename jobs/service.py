"""Creating, reading, cancelling and retrying jobs: what the API, the CLI and the UI call.

A job is a ``Job`` row (the user-facing record) plus one Huey task carrying its id. Creating
a job commits the row before enqueueing, so the worker always finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from db.models import Job, JobStatus, utcnow
from jobs import queue
from services.errors import Invalid, NotFound

JOB_KINDS = ("preannotate", "embed", "train", "evaluate", "select", "round")
FINISHED = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)


def create_job(
    session: Session,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    created_by: str | None = None,
) -> Job:
    """Record a job and put it on the queue. Commits ``session``."""
    if kind not in JOB_KINDS:
        raise Invalid(f"unknown job kind {kind!r}; valid kinds: {', '.join(JOB_KINDS)}.")
    from jobs.tasks import validate_params

    params = validate_params(kind, dict(params or {}))
    job = Job(kind=kind, params=params, created_by=created_by, status=JobStatus.queued)
    return _enqueue(session, job)


def _enqueue(session: Session, job: Job) -> Job:
    """Commit the row first (the worker reads it), then hand its id to the task queue."""
    session.add(job)
    session.commit()
    job.task_id = queue.enqueue(job.id)
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}; list jobs with GET /api/jobs.")
    return job


def list_jobs(
    session: Session, *, status: str | None = None, kind: str | None = None, limit: int = 50
) -> list[Job]:
    stmt = select(Job)
    if status:
        try:
            stmt = stmt.where(Job.status == JobStatus(status))
        except ValueError:
            raise Invalid(
                f"status must be one of {', '.join(s.value for s in JobStatus)}."
            ) from None
    if kind:
        stmt = stmt.where(Job.kind == kind)
    return list(session.exec(stmt.order_by(Job.id.desc()).limit(limit)).all())


def cancel_job(session: Session, job_id: int) -> Job:
    """Cancel a queued job (revoked, never starts) or a running one (stops at its next
    progress report). Finished jobs are returned unchanged."""
    job = get_job(session, job_id)
    if job.status in FINISHED:
        return job
    was_queued = job.status == JobStatus.queued
    job.status = JobStatus.cancelled
    job.message = "cancelled by user"
    if was_queued:
        job.finished_at = utcnow()
    session.add(job)
    session.commit()
    if was_queued and job.task_id:
        queue.revoke(job.task_id)
    session.refresh(job)
    return job


def retry_job(session: Session, job_id: int) -> Job:
    """Queue a failed or cancelled job again with the same parameters (same row; the
    attempt counter keeps count)."""
    job = get_job(session, job_id)
    if job.status not in (JobStatus.failed, JobStatus.cancelled):
        raise Invalid(
            f"job {job_id} is {job.status.value}; only failed or cancelled jobs can be retried."
        )
    job.status = JobStatus.queued
    job.error = None
    job.message = f"retry queued (attempt {job.attempts + 1})"
    job.progress = 0.0
    job.stage = None
    job.finished_at = None
    return _enqueue(session, job)


def job_dict(job: Job) -> dict[str, Any]:
    """The JSON shape of a job for the API and the dashboard."""
    result = {k: v for k, v in (job.result or {}).items() if k != "worker"}
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status.value,
        "params": job.params or {},
        "stage": job.stage,
        "progress": round(job.progress or 0.0, 4),
        "epoch": job.epoch,
        "loss": job.loss,
        "message": job.message,
        "error": job.error,
        "result": result,
        "attempts": job.attempts,
        "created_by": job.created_by,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "retryable": job.status in (JobStatus.failed, JobStatus.cancelled),
    }


def read_log(job: Job, *, tail_bytes: int = 65536) -> str:
    """The end of the job's log file ('' before it started)."""
    if not job.log_path or not Path(job.log_path).is_file():
        return ""
    with open(job.log_path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - tail_bytes))
        return f.read().decode("utf-8", errors="replace")
