"""Self-training stages share one policy: once a project holds enough labelled work, train the
stage in the background; after that, again only once the labelled work has grown by a share.

A stage module declares its :class:`AutoTrainPolicy` once (what it counts, which settings
hold its threshold and growth, what blocks it). The policy only answers questions:
``jobs.autotrain`` asks them when a transaction that changed labels commits
(``services.events.labels_changed``), and queues the job.

A policy's job is due when

- the stage's auto-training is enabled and nothing blocks it (part_seg: a promoted version);
- the count reached the minimum, or, after an earlier version or auto-training job (one that
  lost, failed or was cancelled), grew by the growth share since (so a loser does not run
  again on every save);
- and no auto-training job of the project is queued or running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlmodel import Session, select

from core.config import Settings, get_settings
from db.models import Job, JobStatus, ModelVersion, Project

#: Who auto-training jobs are recorded as.
CREATED_BY = "auto"
PENDING = (JobStatus.queued, JobStatus.running)


@dataclass(frozen=True)
class AutoTrainPolicy:
    """When ``stage`` trains itself. ``unit`` names what ``count`` counts; it is the key of
    the count in the job's params and in a version's ``train_snapshot``."""

    stage: str
    job_kind: str
    unit: str
    count: Callable[[Session, Project], int]
    enabled: Callable[[Settings], bool]
    minimum: Callable[[Settings], int]
    growth: Callable[[Settings], float]
    #: the snapshot count of a version trained otherwise (a round, ``panelbeater train``)
    version_count: Callable[[Session, ModelVersion], int]
    blocked: Callable[[Session, Project], bool] = lambda session, project: False

    def pending_job(self, session: Session, project: Project) -> Job | None:
        """``project``'s queued or running auto-training job of this stage, if any."""
        return session.exec(
            select(Job).where(
                Job.project_id == project.id, Job.kind == self.job_kind, Job.status.in_(PENDING)
            )
        ).first()

    def last_job(self, session: Session, project: Project) -> Job | None:
        return session.exec(
            select(Job)
            .where(Job.project_id == project.id, Job.kind == self.job_kind)
            .order_by(Job.id.desc())
        ).first()

    def trained_at(self, session: Session, project: Project) -> int | None:
        """The count the newest version was trained at, or at which ``project``'s last
        auto-training job was queued, whichever is larger; None when neither exists."""
        counts = []
        newest = session.exec(
            select(ModelVersion)
            .where(ModelVersion.stage == self.stage)
            .order_by(ModelVersion.version.desc())
        ).first()
        if newest is not None:
            counts.append(self.version_count(session, newest))
        last = self.last_job(session, project)
        if last is not None and isinstance((last.params or {}).get(self.unit), int):
            counts.append(last.params[self.unit])
        return max(counts) if counts else None

    def next_threshold(self, session: Session, project: Project) -> int:
        """The count at which the next auto-training is due."""
        settings = get_settings()
        basis = self.trained_at(session, project)
        if basis is None:
            return self.minimum(settings)
        return max(self.minimum(settings), int(np.ceil(basis * (1 + self.growth(settings)))))

    def worth_checking(self, session: Session, project: Project) -> bool:
        """The cheap test run inside the saving transaction: enabled, and the count (one
        COUNT query) reached the minimum. Never raises."""
        settings = get_settings()
        try:
            return self.enabled(settings) and self.count(session, project) >= self.minimum(settings)
        except Exception:
            return False

    def due(self, session: Session, project: Project) -> dict[str, int] | None:
        """The params of the job to queue now (``{unit: count}``), or None when none is due."""
        if not self.enabled(get_settings()) or self.blocked(session, project):
            return None
        n = self.count(session, project)
        if n < self.next_threshold(session, project) or self.pending_job(session, project):
            return None
        return {self.unit: n}
