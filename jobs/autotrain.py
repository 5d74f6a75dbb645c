"""Queue the self-training stages' jobs when a transaction that changed labels commits.

Services mark the change on their session (``services.events.labels_changed``). Here, just
before the commit, the cheap test of each policy runs in that transaction (one COUNT query
each, so it sees the new labels); after the commit, the full check runs in a session of its
own and queues what is due. A rolled-back save queues nothing, the saving transaction is
never committed early, and a failure here is logged and never turns a committed save into
an error.

Every process that saves labels calls :func:`listen` once at start-up (the app, the CLI,
the worker).
"""

from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from db.models import Job, Project
from jobs.service import create_job
from services.events import take_labels_changed
from services.training import assist_training, damage_seg_training, part_seg_training
from services.training.autotrain import CREATED_BY, AutoTrainPolicy

log = logging.getLogger(__name__)

#: In the order their jobs are queued. part_seg's comes first: on an import that crosses the
#: thresholds one worker then runs it before the others, and a project with nothing to
#: pre-annotate with gains most from the part model, which then tells each damage of the
#: damage model's (next) which part it sits on.
POLICIES: tuple[AutoTrainPolicy, ...] = (
    part_seg_training.POLICY,
    damage_seg_training.POLICY,
    assist_training.POLICY,
)

#: ``session.info`` key: project id -> job kinds worth a full check after the commit.
_WORTH_CHECKING = "autotrain_worth_checking"


def queue_if_due(session: Session, project: Project, policy: AutoTrainPolicy) -> Job | None:
    """Queue ``policy``'s job of ``project`` when one is due; returns it, else None. Commits
    ``session`` when it queues."""
    params = policy.due(session, project)
    if params is None:
        return None
    job = create_job(session, policy.job_kind, params, created_by=CREATED_BY, project=project)
    log.info("queued %s auto-training (job %s) at %s", policy.stage, job.id, params)
    return job


def _before_commit(session: OrmSession) -> None:
    projects = take_labels_changed(session)
    if not projects:
        return
    try:
        worth = session.info.setdefault(_WORTH_CHECKING, {})
        for project_id in projects:
            project = session.get(Project, project_id)
            if project is None:
                continue
            kinds = [p.job_kind for p in POLICIES if p.worth_checking(session, project)]
            if kinds:
                worth[project_id] = kinds
    except Exception:
        log.exception("could not check whether auto-training is due; carrying on")


def _after_commit(session: OrmSession) -> None:
    worth = session.info.pop(_WORTH_CHECKING, None)
    if not worth:
        return
    from db.session import side_session_scope

    for project_id, kinds in worth.items():
        try:
            # outside the pool: the committing request still holds its pooled connection
            with side_session_scope() as s:
                project = s.get(Project, project_id)
                for policy in POLICIES:
                    if project is not None and policy.job_kind in kinds:
                        queue_if_due(s, project, policy)
        except Exception:  # the caller's data is committed; never turn that into an error
            log.exception("could not queue auto-training of project %s; carrying on", project_id)


def _after_rollback(session: OrmSession) -> None:
    take_labels_changed(session)
    session.info.pop(_WORTH_CHECKING, None)


def listen() -> None:
    """Subscribe to every session's commit and rollback (once per process)."""
    if event.contains(OrmSession, "before_commit", _before_commit):
        return
    event.listen(OrmSession, "before_commit", _before_commit)
    event.listen(OrmSession, "after_commit", _after_commit)
    event.listen(OrmSession, "after_rollback", _after_rollback)
