"""Queue the self-training stages' jobs when a transaction that changed labels commits.

Services mark the change on their session (``services.events.labels_changed``). Here, just
before the commit, the cheap test runs in that transaction (every policy's count, and
whether it is blocked or its job already waits, in one query, so it sees the new labels): a
count below the policy's next threshold needs nothing more. Only otherwise, after the commit, the full check runs in
a session of its own and queues what is due. The process remembers each policy's next
threshold for a minute (:data:`THRESHOLD_MEMORY_S`), so that a project past its minimum does
not pay the full check on every save; a remembered threshold is never above the true one
unless a job or version was deleted meanwhile, and it is forgotten when a job is queued.

The counts grow with the project, so a project's commits run the cheap test at most once per
``autotrain_check_interval_s`` (5 s): the first at once, and a change inside the interval at
its end, in a session of its own (:class:`Debounce`). A process that exits first runs the
waiting checks as it exits. A rolled-back save queues nothing, the saving transaction is
never committed early, and a failure here is logged and never turns a committed save into
an error.

Every process that saves labels calls :func:`listen` once at start-up (the app, the CLI,
the worker).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from core.config import get_settings
from db.models import Job, Project
from jobs.service import create_job
from services.events import take_labels_changed
from services.training import assist_training, damage_seg_training, part_seg_training
from services.training.autotrain import CREATED_BY, AutoTrainPolicy, cheap_checks

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

#: How long a policy's next threshold is remembered (seconds).
THRESHOLD_MEMORY_S = 60.0
#: (database, project id, job kind) -> (the next threshold, when it was computed, under
#: which settings: the minimum and the growth share)
_thresholds: dict[tuple[str, int, str], tuple[int, float, tuple[int, float]]] = {}


def _memory_key(session: OrmSession, project_id: int, policy: AutoTrainPolicy):
    return (str(session.get_bind().url), project_id, policy.job_kind)


def _rule(policy: AutoTrainPolicy) -> tuple[int, float]:
    settings = get_settings()
    return policy.minimum(settings), policy.growth(settings)


def _remembered_threshold(session: OrmSession, project_id: int, policy: AutoTrainPolicy) -> int:
    """The policy's next threshold as last computed under today's settings, else its minimum."""
    rule = _rule(policy)
    threshold, at, then = _thresholds.get(_memory_key(session, project_id, policy), (0, 0.0, rule))
    if then != rule or time.monotonic() - at > THRESHOLD_MEMORY_S:
        return rule[0]
    return max(rule[0], threshold)


def queue_if_due(session: Session, project: Project, policy: AutoTrainPolicy) -> Job | None:
    """Queue ``policy``'s job of ``project`` when one is due; returns it, else None. Commits
    ``session`` when it queues."""
    params, threshold = policy.check(session, project)
    key = _memory_key(session, project.id, policy)
    if params is None:
        _thresholds[key] = (threshold, time.monotonic(), _rule(policy))
        return None
    _thresholds.pop(key, None)
    job = create_job(session, policy.job_kind, params, created_by=CREATED_BY, project=project)
    log.info("queued %s auto-training (job %s) at %s", policy.stage, job.id, params)
    return job


class Debounce:
    """At most one run per key and interval: the first at once, and a call inside the
    interval runs once at its end (on a timer thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[object, float] = {}
        self._waiting: dict[object, tuple[threading.Timer, Callable[[], None]]] = {}

    def now(self, key: object, interval_s: float, later: Callable[[], None]) -> bool:
        """True: run now. False: ``later`` runs at the interval's end (once, however many
        calls came inside it)."""
        with self._lock:
            t = time.monotonic()
            last = self._last.get(key)
            if interval_s <= 0 or last is None or t - last >= interval_s:
                self._last[key] = t
                return True
            if key not in self._waiting:
                timer = threading.Timer(interval_s - (t - last), self._fire, args=(key,))
                timer.daemon = True
                self._waiting[key] = (timer, later)
                timer.start()
            return False

    def _fire(self, key: object) -> None:
        with self._lock:
            waiting = self._waiting.pop(key, None)
            self._last[key] = time.monotonic()
        if waiting is not None:
            waiting[1]()

    def flush(self) -> None:
        """Run every waiting call now (at exit)."""
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        for timer, later in waiting:
            timer.cancel()
            later()


_debounce = Debounce()


def _worth_checking(session: OrmSession, project: Project) -> list[str]:
    """The job kinds whose cheap test passes for ``project`` (one query)."""
    policies = [p for p in POLICIES if p.enabled(get_settings())]
    checks = cheap_checks(session, project, policies) if policies else []
    return [
        p.job_kind
        for p, (count, held_back) in zip(policies, checks, strict=True)
        if not held_back and count >= _remembered_threshold(session, project.id, p)
    ]


def _check_later(database: str, project_id: int) -> None:
    """The cheap test and the full check of a change that came inside the interval."""
    from db.session import side_session_scope

    try:
        with side_session_scope() as s:
            if str(s.get_bind().url) != database:  # the process moved to another store
                return
            project = s.get(Project, project_id)
            kinds = _worth_checking(s, project) if project is not None else []
            for policy in POLICIES:
                if policy.job_kind in kinds:
                    queue_if_due(s, project, policy)
    except Exception:
        log.exception("could not queue auto-training of project %s; carrying on", project_id)


def _before_commit(session: OrmSession) -> None:
    projects = take_labels_changed(session)
    if not projects:
        return
    try:
        interval = get_settings().autotrain_check_interval_s
        database = str(session.get_bind().url)
        worth = session.info.setdefault(_WORTH_CHECKING, {})
        for project_id in projects:
            later = lambda pid=project_id: _check_later(database, pid)  # noqa: E731
            if not _debounce.now((database, project_id), interval, later):
                continue
            project = session.get(Project, project_id)
            kinds = _worth_checking(session, project) if project is not None else []
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
    atexit.register(_debounce.flush)
    event.listen(OrmSession, "after_commit", _after_commit)
    event.listen(OrmSession, "after_rollback", _after_rollback)
