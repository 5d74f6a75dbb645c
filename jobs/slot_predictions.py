"""Pre-annotate the photos put into inspection slots, once the transaction that put them
there commits.

``services.claims.inspections.assign_photo`` marks each placed photo on its session
(``services.events.photos_placed``). After the commit, this queues one ``preannotate`` job
per pre-annotating stage that has a promoted version (``models.registry``'s
``pre_annotating_stages``), limited to those photos, in a session of its own. A rolled-back
placement queues nothing, and a failure here is logged and never turns a committed upload
into an error.

Every process that places photos calls :func:`listen` once at start-up (the app, the CLI,
the worker), as it does ``jobs.autotrain.listen``.
"""

from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from db.models import Job, Project
from jobs.service import create_job
from models.registry import pre_annotating_stages
from services.events import take_photos_placed
from services.training.registry import current

log = logging.getLogger(__name__)

#: ``Job.created_by`` of the jobs queued here.
CREATED_BY = "inspection photos"


def queue_preannotation(session: Session, project: Project, image_ids: list[int]) -> list[Job]:
    """Queue a ``preannotate`` job over ``image_ids`` for each pre-annotating stage of
    ``project`` with a promoted version; returns the jobs (none without such a stage).
    Commits ``session`` when it queues."""
    jobs = []
    for stage in pre_annotating_stages():
        mv = current(session, stage)
        if mv is None:
            continue
        params = {"stage": stage, "version": mv.name, "image_ids": sorted(image_ids)}
        job = create_job(session, "preannotate", params, created_by=CREATED_BY, project=project)
        log.info(
            "queued pre-annotation of %d slot photo(s) by %s (job %s)",
            len(image_ids),
            mv.name,
            job.id,
        )
        jobs.append(job)
    return jobs


def _after_commit(session: OrmSession) -> None:
    placed = take_photos_placed(session)
    if not placed:
        return
    from db.session import side_session_scope

    for project_id, ids in placed.items():
        try:
            # outside the pool: the committing request still holds its pooled connection
            with side_session_scope() as s:
                project = s.get(Project, project_id)
                if project is not None:
                    queue_preannotation(s, project, sorted(ids))
        except Exception:  # the photos are committed; never turn that into an error
            log.exception("could not queue pre-annotation of project %s; carrying on", project_id)


def _after_rollback(session: OrmSession) -> None:
    take_photos_placed(session)


def listen() -> None:
    """Subscribe to every session's commit and rollback (once per process)."""
    if event.contains(OrmSession, "after_commit", _after_commit):
        return
    event.listen(OrmSession, "after_commit", _after_commit)
    event.listen(OrmSession, "after_rollback", _after_rollback)
