"""The Huey instance and the single task that runs a ``Job`` row.

Storage comes from settings: ``queue_url`` empty -> ``SqliteHuey`` at ``<data_dir>/queue.db``
(embedded, no server); ``redis://...`` -> ``RedisHuey``. Huey only carries the job id; the
job's state, progress and result live in the database row, so any process can read them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey

from core.config import Settings, env_name, get_settings
from jobs.runner import execute_job

QUEUE_NAME = "panelbeater"


def queue_location(settings: Settings | None = None) -> str:
    """``redis://...`` or the SQLite queue file path."""
    s = settings or get_settings()
    if s.queue_url:
        return s.queue_url
    return str((Path(s.data_dir) / "queue.db").resolve())


@lru_cache(maxsize=8)
def _make_huey(location: str) -> Huey:
    if location.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis  # noqa: F401
        except ImportError:
            raise RuntimeError(
                f"{env_name('queue_url')}={location!r} needs the 'redis' package: "
                "pip install redis (or leave the queue URL empty for the embedded SQLite queue)."
            ) from None
        return RedisHuey(QUEUE_NAME, url=location)
    if "://" in location:
        raise ValueError(
            f"{env_name('queue_url')}={location!r} is not supported; use a redis:// URL, "
            "or leave it empty for the embedded SQLite queue."
        )
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=location)


@lru_cache(maxsize=8)
def _task_for(location: str):
    huey = _make_huey(location)

    @huey.task(name="panelbeater.run_job")
    def run_job(job_id: int) -> None:
        execute_job(job_id)

    return run_job


def get_huey(settings: Settings | None = None) -> Huey:
    """The Huey instance for the current settings (cached per location)."""
    loc = queue_location(settings)
    _task_for(loc)  # make sure the task is registered on this instance
    return _make_huey(loc)


def enqueue(job_id: int, settings: Settings | None = None) -> str:
    """Put a job on the queue; returns Huey's task id."""
    result = _task_for(queue_location(settings))(job_id)
    return result.id


def revoke(task_id: str, settings: Settings | None = None) -> None:
    """Stop a queued task from starting (a running one is stopped cooperatively instead)."""
    get_huey(settings).revoke_by_id(task_id)
