"""Background jobs over HTTP: start (POST /jobs), watch (GET /jobs/{id}), cancel
(DELETE /jobs/{id}), retry (POST /jobs/{id}/retry), read the log (GET /jobs/{id}/log).

Every route answers for the served project's jobs only: another project's job id is 404."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from api.deps import ProjectDep, SessionDep, require, service_errors
from api.schemas import IdPath, JobOut
from db.models import Job, User
from jobs import service as job_service
from jobs.runner import recover_stale_jobs
from services.accounts.users import Permission

router = APIRouter(tags=["jobs"])


def _out(job: Job) -> JobOut:
    return JobOut.model_validate(job_service.job_dict(job))


class JobIn(BaseModel):
    kind: str = Field(description="preannotate, embed, train, evaluate, select or round")
    params: dict[str, Any] = Field(default_factory=dict)


@router.get("/jobs")
def list_jobs(
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
    status: str | None = None,
    kind: str | None = None,
    limit: int = Query(default=50, ge=1, le=500),
) -> list[JobOut]:
    """The project's recent jobs, newest first."""
    recover_stale_jobs()
    with service_errors():
        jobs = job_service.list_jobs(
            session, project=project, status=status, kind=kind, limit=limit
        )
        return [_out(j) for j in jobs]


@router.post("/jobs", status_code=201)
def start_job(
    body: JobIn,
    user: Annotated[User, Depends(require(Permission.retrain))],
    project: ProjectDep,
    session: SessionDep,
) -> JobOut:
    """Queue a job on the project; the worker picks it up. Returns the job with its id."""
    with service_errors():
        job = job_service.create_job(
            session, body.kind, body.params, created_by=user.username, project=project
        )
    return _out(job)


@router.get("/jobs/{job_id}")
def get_job(
    job_id: IdPath,
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
) -> JobOut:
    """Status, stage, progress (0..1), epoch, loss, message, error and result."""
    recover_stale_jobs()
    with service_errors():
        job = job_service.get_job(session, job_id, project)
        session.refresh(job)
        return _out(job)


@router.get("/jobs/{job_id}/log", response_class=PlainTextResponse)
def job_log(
    job_id: IdPath,
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
) -> str:
    with service_errors():
        return job_service.read_log(job_service.get_job(session, job_id, project))


@router.delete("/jobs/{job_id}")
def cancel_job(
    job_id: IdPath,
    user: Annotated[User, Depends(require(Permission.retrain))],
    project: ProjectDep,
    session: SessionDep,
) -> JobOut:
    """Cancel: a queued job never starts; a running one stops at its next progress report."""
    with service_errors():
        return _out(job_service.cancel_job(session, job_id, project))


@router.post("/jobs/{job_id}/retry")
def retry_job(
    job_id: IdPath,
    user: Annotated[User, Depends(require(Permission.retrain))],
    project: ProjectDep,
    session: SessionDep,
) -> JobOut:
    """Queue a failed or cancelled job again."""
    with service_errors():
        return _out(job_service.retry_job(session, job_id, project))
