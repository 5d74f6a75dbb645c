"""The after-save trigger shared by the self-training stages (assist_net, part_seg): during a
save or an import, a cheap count decides whether a check is worth making; the check itself
(``queue_if_due``) runs once the caller's session commits, so it sees the new labels and
nothing is queued for work that rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlmodel import Session

from db.models import Job, Project

log = logging.getLogger(__name__)

QueueIfDue = Callable[[Session, Project], Job | None]


def queue_self_training(session: Session, project: Project) -> None:
    """After an import, a save or a status change: both self-training stages' triggers.

    part_seg's comes first: its check then runs first after the commit, so on an import that
    crosses both thresholds its job is queued, and run by the worker, before the assistance's.
    A project with nothing to pre-annotate with gains most from the part model, which the
    assistance's training would otherwise hold back by its own length (issue 16: a part
    pre-annotator within 15 minutes of importing 400 photos)."""
    from services.assist_training import maybe_queue_assist_training
    from services.part_seg_training import maybe_queue_part_seg_training

    maybe_queue_part_seg_training(session, project)  # cheap; never fails the caller
    maybe_queue_assist_training(session, project)


def check_after_commit(
    session: Session,
    project: Project,
    *,
    name: str,
    enabled: bool,
    due: Callable[[], bool],
    queue_if_due: QueueIfDue,
) -> bool:
    """Arrange ``queue_if_due(side_session, project)`` to run after ``session`` commits when
    ``enabled`` and ``due()`` (the cheap count against the threshold). Returns whether a check
    waits for the commit. Never raises: a failure is logged and the save or import goes on."""
    pending, listening = f"{name}_autotrain_project", f"{name}_autotrain_listening"
    try:
        if not enabled:
            return False
        if session.info.get(pending) == project.id:
            return True
        if not due():
            return False
        if not session.info.get(listening):
            event.listen(session, "after_commit", _after_commit(pending, name, queue_if_due))
            event.listen(session, "after_rollback", lambda s: s.info.pop(pending, None))
            session.info[listening] = True
        session.info[pending] = project.id
        return True
    except Exception:
        log.exception("could not check whether %s auto-training is due; carrying on", name)
        return False


def _after_commit(pending: str, name: str, queue_if_due: QueueIfDue) -> Callable[[Session], None]:
    def check(session: Session) -> None:
        from db.session import side_session_scope

        project_id = session.info.pop(pending, None)
        if project_id is None:
            return
        try:
            # outside the pool: the committing request still holds its pooled connection
            with side_session_scope() as s:
                project = s.get(Project, project_id)
                if project is not None:
                    queue_if_due(s, project)
        except Exception:  # the caller's data is committed; never turn that into an error
            log.exception("could not queue %s auto-training; carrying on", name)

    return check
