"""Creating, reading, cancelling and retrying jobs: what the API, the CLI and the UI call.

A job is a ``Job`` row (the user-facing record) plus one Huey task carrying its id. Creating
a job commits the row before enqueueing, so the worker always finds it.

A job belongs to the project it was started in and works on that project; given a
``project``, the functions here answer only for its jobs (another project's job id is
NotFound, as for images).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.presets import DEFAULT_PRESET
from db.models import Job, JobStatus, Project, utcnow
from db.session import session_scope
from jobs import queue
from jobs.tasks import HANDLERS
from services.errors import Invalid, NotFound

JOB_KINDS = tuple(HANDLERS)
FINISHED = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)


def create_job(
    session: Session,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    created_by: str | None = None,
    project: Project | None = None,
) -> Job:
    """Record a job of ``project`` (default: the project the settings serve) and put it on
    the queue. Commits ``session``."""
    params = validate_params(kind, dict(params or {}))
    if project is None:
        from services.accounts.projects import get_or_create_project

        project = get_or_create_project(session)
    job = Job(
        kind=kind,
        params=params,
        created_by=created_by,
        status=JobStatus.queued,
        project_id=project.id,
    )
    return _enqueue(session, job)


_REQUIRED = {"preannotate": ("stage",), "train": ("stage",), "evaluate": ("stage",)}


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check a new job's kind and parameters before it is queued (errors name the field)."""
    if kind not in HANDLERS:
        raise Invalid(f"unknown job kind {kind!r}; valid kinds: {', '.join(JOB_KINDS)}.")
    accepted = [name for name in inspect.signature(HANDLERS[kind]).parameters if name != "ctx"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise Invalid(
            f"a {kind} job takes no params.{unknown[0]}; its parameters are "
            f"{', '.join(accepted) or 'none'}."
        )
    for key in _REQUIRED.get(kind, ()):
        if not params.get(key):
            raise Invalid(f'a {kind} job needs params.{key} (e.g. {{"{key}": "yolo_seg"}}).')
    if "k" in params:
        try:
            params["k"] = int(params["k"])
        except (TypeError, ValueError):
            raise Invalid("params.k must be a whole number of images.") from None
        if params["k"] < 1:
            raise Invalid("params.k must be at least 1.")
    if params.get("pseudo_labels") is not None and not isinstance(params["pseudo_labels"], bool):
        raise Invalid("params.pseudo_labels must be true, false or null (the setting).")
    if params.get("image_ids") is not None:
        ids = params["image_ids"]
        if not isinstance(ids, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in ids
        ):
            raise Invalid("params.image_ids must be a list of image ids, e.g. [12, 13].")
    if kind == "select" and "strategy" in params:
        from active_learning.strategies import STRATEGIES

        if params["strategy"] not in STRATEGIES:
            raise Invalid(f"params.strategy must be one of {', '.join(STRATEGIES)}.")
    if kind == "round" and params.get("from_scratch") is not None:
        scratch = params["from_scratch"]
        if not isinstance(scratch, list) or not all(isinstance(x, str) for x in scratch):
            raise Invalid('params.from_scratch must be a list of stage names, e.g. ["yolo_seg"].')
    if kind in ("round",) and params.get("stages") is not None:
        from models.registry import stage_names

        stages = params["stages"]
        if not isinstance(stages, list) or not all(isinstance(x, str) for x in stages):
            raise Invalid('params.stages must be a list of stage names, e.g. ["yolo_seg"].')
        unknown_stages = sorted(set(stages) - set(stage_names()))
        if unknown_stages:
            raise Invalid(
                f"unknown stage(s) {', '.join(unknown_stages)}; choose from "
                f"{', '.join(stage_names())}"
            )
    if kind == "round":
        _check_round_weights(params)
        _check_round_options(params)
    return params


def _known_stage(field: str, stage: object) -> str:
    from models.registry import stage_names

    if not isinstance(stage, str) or stage not in stage_names():
        raise Invalid(
            f"params.{field} names an unknown stage {stage!r}; choose from "
            f"{', '.join(stage_names())}."
        )
    return stage


def _check_round_weights(params: dict[str, Any]) -> None:
    """``weights``: stage -> a weights name in the weights folder or a local path. The file
    itself is read when the round trains that stage (on the worker's machine)."""
    from models.registry import stage_class

    weights = params.get("weights")
    if weights is None:
        return
    if not isinstance(weights, dict):
        raise Invalid('params.weights must map stages to weights, e.g. {"yolo_seg": "coco-n"}.')
    for stage, ref in weights.items():
        _known_stage("weights", stage)
        if not stage_class(stage).start_weight_fields:
            raise Invalid(f"params.weights.{stage}: {stage!r} cannot start from a weights file.")
        if not isinstance(ref, str) or not ref.strip():
            raise Invalid(
                f"params.weights.{stage} must be the name of a file in the weights folder "
                "or a local path."
            )


def _check_round_options(params: dict[str, Any]) -> None:
    """``options``: stage -> ``["key=value", ...]`` (the CLI's ``--set``), each key checked
    against the stage's config now, so a typo is refused when the round is asked for."""
    from models.base import StageError
    from models.registry import config_class

    options = params.get("options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise Invalid(
            'params.options must map stages to key=value lists, e.g. {"yolo_seg": ["imgsz=320"]}.'
        )
    for stage, pairs in options.items():
        _known_stage("options", stage)
        if not isinstance(pairs, list) or not all(isinstance(x, str) for x in pairs):
            raise Invalid(f'params.options.{stage} must be a list of "key=value" strings.')
        try:
            config_class(stage).parse_options(pairs)
        except StageError as e:
            raise Invalid(f"params.options.{stage}: {e}") from None


def start_round(
    session: Session | None = None,
    *,
    stages: list[str] | None = None,
    config: str = DEFAULT_PRESET,
    epochs: int | None = None,
    created_by: str | None = None,
    strategy: str = "hybrid",
    k: int = 50,
    force_promote: bool = False,
    device: str | None = None,
    project: Project | None = None,
    from_scratch: list[str] | None = None,
    weights: dict[str, str] | None = None,
    options: dict[str, list[str]] | None = None,
    pseudo_labels: bool | None = None,
) -> Job:
    """Queue a retraining round (:mod:`jobs.rounds`) of ``project`` (default: the served
    one); a worker runs it. Without ``session`` a new one is used.

    ``weights``: stage -> weights name or path to start from (a stage given a file is one
    to train, named in ``stages`` or not); ``options``: stage -> ``["key=value", ...]``
    config overrides (refused now when a key is unknown); ``pseudo_labels``: train on
    confident predictions of unlabelled photos too (None: the ``pseudo_labels`` setting)."""
    if weights and stages:
        stages = list(dict.fromkeys([*stages, *weights]))
    elif weights:
        stages = list(weights)
    params: dict[str, Any] = {
        "config": config,
        "strategy": strategy,
        "k": k,
        "force_promote": force_promote,
    }
    if stages:
        params["stages"] = list(stages)
    if epochs is not None:
        params["epochs"] = int(epochs)
    if device:
        params["device"] = device
    if from_scratch:
        params["from_scratch"] = list(from_scratch)
    if weights:
        params["weights"] = dict(weights)
    if options:
        params["options"] = {stage: list(pairs) for stage, pairs in options.items()}
    if pseudo_labels is not None:
        params["pseudo_labels"] = bool(pseudo_labels)
    if session is None:
        with session_scope() as s:
            return create_job(s, "round", params, created_by=created_by, project=project)
    return create_job(session, "round", params, created_by=created_by, project=project)


def _enqueue(session: Session, job: Job) -> Job:
    """Commit the row first (the worker reads it), then hand its id to the task queue."""
    session.add(job)
    session.commit()
    job.task_id = queue.enqueue(job.id)
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def get_job(session: Session, job_id: int, project: Project | None = None) -> Job:
    """Job ``job_id``; NotFound when it does not exist or is another ``project``'s."""
    job = session.get(Job, job_id)
    if job is None or (project is not None and job.project_id != project.id):
        raise NotFound(f"no job {job_id}; list jobs with GET /api/jobs.")
    return job


def list_jobs(
    session: Session,
    *,
    project: Project,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
) -> list[Job]:
    """``project``'s jobs, newest first."""
    stmt = select(Job).where(Job.project_id == project.id)
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


def cancel_job(session: Session, job_id: int, project: Project | None = None) -> Job:
    """Cancel a queued job (revoked, never starts) or a running one (stops at its next
    progress report). Finished jobs are returned unchanged. See :func:`get_job`."""
    job = get_job(session, job_id, project)
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


def retry_job(session: Session, job_id: int, project: Project | None = None) -> Job:
    """Queue a failed or cancelled job again with the same parameters (same row; the
    attempt counter keeps count). See :func:`get_job`."""
    job = get_job(session, job_id, project)
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
