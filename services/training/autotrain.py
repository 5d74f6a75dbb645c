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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, exists, or_
from sqlmodel import Session, func, select

from core.config import Settings, get_settings
from db.models import LABELLED_STATUSES, Annotation, Image, Job, JobStatus, ModelVersion, Project
from services.training.registry import current, primary_metric

#: Who auto-training jobs are recorded as.
CREATED_BY = "auto"
PENDING = (JobStatus.queued, JobStatus.running)


@dataclass(frozen=True)
class AutoTrainPolicy:
    """When ``stage`` trains itself. ``unit`` names what ``count`` counts; it is the key of
    the count in the job's params and in a version's ``train_snapshot``. Its settings are
    ``<settings>_autotrain`` (on or off), ``<settings>_autotrain_min_<unit>`` (the first
    threshold) and ``<settings>_autotrain_growth`` (the share the count must grow by)."""

    stage: str
    job_kind: str
    unit: str
    settings: str
    #: what is counted, as one SQL expression of the project's id (:meth:`count` runs it;
    #: :func:`cheap_checks` runs every policy's in one query)
    count_expr: Callable[[int], ColumnElement[int]]
    #: the snapshot count of a version trained otherwise (a round, ``panelbeater train``)
    version_count: Callable[[Session, ModelVersion], int]
    #: what stops it, as one SQL condition (e.g. a promoted version); None: nothing does
    blocked_expr: Callable[[], ColumnElement[bool]] | None = None

    def count(self, session: Session, project: Project) -> int:
        return int(session.exec(select(self.count_expr(project.id))).one())

    def blocked(self, session: Session, project: Project) -> bool:
        if self.blocked_expr is None:
            return False
        return bool(session.exec(select(self.blocked_expr())).one())

    def enabled(self, settings: Settings) -> bool:
        return bool(getattr(settings, f"{self.settings}_autotrain"))

    def minimum(self, settings: Settings) -> int:
        return int(getattr(settings, f"{self.settings}_autotrain_min_{self.unit}"))

    def growth(self, settings: Settings) -> float:
        return float(getattr(settings, f"{self.settings}_autotrain_growth"))

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
        """The cheap test of this policy alone: enabled, and the count (one COUNT query)
        reached the minimum. Never raises. (``jobs.autotrain`` asks every policy's at once:
        :func:`cheap_checks`.)"""
        settings = get_settings()
        try:
            if not self.enabled(settings):
                return False
            count, _held_back = cheap_checks(session, project, [self])[0]
            return count >= self.minimum(settings)
        except Exception:
            return False

    def due(self, session: Session, project: Project) -> dict[str, int] | None:
        """The params of the job to queue now (``{unit: count}``), or None when none is due."""
        return self.check(session, project)[0]

    def check(self, session: Session, project: Project) -> tuple[dict[str, int] | None, int]:
        """:meth:`due`, and the next threshold when it was computed (else the minimum)."""
        settings = get_settings()
        if not self.enabled(settings) or self.blocked(session, project):
            return None, self.minimum(settings)
        n = self.count(session, project)
        threshold = self.next_threshold(session, project)
        if n < threshold or self.pending_job(session, project):
            return None, threshold
        return {self.unit: n}, threshold

    def waiting_line(
        self, session: Session, project: Project, title: str, counted: str, minutes: float
    ) -> str:
        """The dashboard's line while the stage waits to train itself: its queued or running
        job, else ``counted`` (e.g. "40 labelled photos") and the next threshold, with how
        the last run ended."""
        job = self.pending_job(session, project)
        if job is not None:
            return (
                f"{title} auto-training: job {job.id} {job.status.value} (about {minutes:.0f} min)"
            )
        line = f"{title} auto-training: {counted}, next training at "
        line += str(self.next_threshold(session, project))
        last = self.last_job(session, project)
        if last is not None and last.status == JobStatus.failed:
            line += f"; the last run failed: {last.error or 'see its job'}"
        elif last is not None and (last.result or {}).get("reason"):
            line += f"; the last run: {last.result['reason']}"
        return line


def photos_in_snapshot(session: Session, mv: ModelVersion) -> int:
    """The labelled-photo count a version was trained at (its snapshot's)."""
    snap = mv.train_snapshot or {}
    return int(snap.get("photos", snap.get("count", 0)) or 0)


def while_unpromoted(stage: str) -> Callable[[], ColumnElement[bool]]:
    """A ``blocked_expr``: the stage trains itself only until a version is promoted (then
    rounds carry it on, warm-started)."""
    return lambda: exists().where(
        ModelVersion.stage == stage,
        ModelVersion.promoted == True,  # noqa: E712
    )


def cheap_checks(
    session: Session, project: Project, policies: Sequence[AutoTrainPolicy]
) -> list[tuple[int, bool]]:
    """Each policy's count, and whether it is held back (blocked, or its job already queued
    or running), in one query: what the saving transaction asks on every commit that changed
    labels (``jobs.autotrain``)."""
    if not policies:
        return []
    columns = []
    for policy in policies:
        held_back = exists().where(
            Job.project_id == project.id, Job.kind == policy.job_kind, Job.status.in_(PENDING)
        )
        if policy.blocked_expr is not None:
            held_back = or_(held_back, policy.blocked_expr())
        columns += [policy.count_expr(project.id), held_back]
    row = session.exec(select(*columns)).one()
    return [(int(row[2 * i]), bool(row[2 * i + 1])) for i in range(len(policies))]


def promoted_line(session: Session, stage: str, title: str) -> tuple[str, ModelVersion] | None:
    """``"<title>: <version> promoted, held-out mask AP50 0.40; rounds retrain it"`` and the
    version, or None while none is promoted."""
    mv = current(session, stage)
    if mv is None:
        return None
    primary = primary_metric(mv.metrics or {}, stage)
    figure = ""
    if primary is not None:
        key, value = primary
        name = {"AP50": "mask AP50", "miou": "mIoU"}.get(key.rsplit(".", 1)[-1], key)
        figure = f", held-out {name} {value:.2f}"
    return f"{title}: {mv.name} promoted{figure}; rounds retrain it", mv


def labelled_photos_with(group: str) -> Callable[[int], ColumnElement[int]]:
    """The count of a project's labelled or reviewed photos holding at least one (live)
    polygon of the taxonomy ``group``, held-out ones included, as a ``count_expr``. A
    segmenter of parts waits for part labels, and a project of damage photos alone never
    queues it."""

    def count_expr(project_id: int) -> ColumnElement[int]:
        return (
            select(func.count(func.distinct(Image.id)))
            .join(Annotation, Annotation.image_id == Image.id)
            .where(
                Image.project_id == project_id,
                Image.status.in_(LABELLED_STATUSES),
                Annotation.group == group,
                Annotation.deleted == False,  # noqa: E712
            )
            .scalar_subquery()
        )

    count_expr.__name__ = f"labelled_photos_with_{group}"
    return count_expr


def segmenter_policy(
    stage: str, job_kind: str, count_expr: Callable[[int], ColumnElement[int]]
) -> AutoTrainPolicy:
    """The policy of a segmenter that trains itself until a version is promoted (part_seg,
    damage_seg): ``count_expr`` labelled photos, settings named after the stage."""
    return AutoTrainPolicy(
        stage=stage,
        job_kind=job_kind,
        unit="photos",
        settings=stage,
        count_expr=count_expr,
        version_count=photos_in_snapshot,
        blocked_expr=while_unpromoted(stage),
    )
