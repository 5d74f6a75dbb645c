"""The job worker: a Huey consumer in its own process.

``panelbeater worker`` (or ``python -m jobs.worker``) runs one in the foreground, e.g. on a GPU
machine that shares the database and the data dir; ``panelbeater serve`` starts one as a
subprocess through :func:`start_worker_process`. On start the worker marks jobs left running
by a dead worker as failed (retryable) and deletes half-written artifacts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from core.config import Settings, configure, env_name, get_settings

log = logging.getLogger(__name__)

#: How often the worker looks for jobs whose worker died (other hosts included).
STALE_CHECK_S = 30.0


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a child process see the same settings."""
    env = dict(os.environ)
    for key, value in settings.model_dump().items():
        name = env_name(key)
        if value is None:
            env.pop(name, None)
        elif isinstance(value, dict | list):  # what pydantic-settings reads back from JSON
            env[name] = json.dumps(value)
        else:
            env[name] = str(value.resolve() if isinstance(value, Path) else value)
    return env


def start_worker_process(
    settings: Settings | None = None,
    *,
    workers: int = 1,
    max_delay: float = 2.0,
    log_file: str | Path | None = None,
) -> subprocess.Popen:
    """Start ``python -m jobs.worker`` as a child process with ``settings``; the caller
    terminates it (SIGTERM stops it gracefully, SIGKILL is survivable: see crash safety)."""
    s = settings or get_settings()
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.worker",
            "--workers",
            str(workers),
            "--max-delay",
            str(max_delay),
        ],
        env=worker_env(s),
        cwd=str(Path(__file__).resolve().parents[1]),
        stdout=out,
        stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
    )


def _stale_loop(stop: threading.Event) -> None:
    from jobs.runner import recover_stale_jobs

    while not stop.wait(STALE_CHECK_S):
        try:
            ids = recover_stale_jobs()
            if ids:
                log.warning("marked jobs %s failed: their worker stopped", ids)
        except Exception:
            log.exception("stale-job check failed")


def prepare_worker() -> list[int]:
    """Migrate the store, fail jobs orphaned by a dead worker, delete temporary artifacts."""
    from db.session import init_db
    from jobs.runner import recover_stale_jobs
    from services.training.registry import cleanup_tmp_artifacts

    init_db()
    failed = recover_stale_jobs()
    if failed:
        log.warning("jobs %s were running in a worker that died; marked failed (retryable)", failed)
    removed = cleanup_tmp_artifacts(max_age_s=0)
    if removed:
        log.info("removed %d half-written artifacts", len(removed))
    return failed


def run_worker(*, workers: int = 1, max_delay: float = 2.0) -> None:
    """Run a consumer in the foreground until SIGINT/SIGTERM."""
    from jobs.queue import get_huey, queue_location

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    niceness = get_settings().worker_nice
    if niceness and hasattr(os, "nice"):
        os.nice(niceness)  # a save must not wait behind a training job for the CPU
    prepare_worker()
    stop = threading.Event()
    threading.Thread(target=_stale_loop, args=(stop,), daemon=True).start()
    huey = get_huey()
    log.info("worker pid %s consuming %s with %d thread(s)", os.getpid(), queue_location(), workers)
    consumer = huey.create_consumer(
        workers=workers,
        worker_type="thread",
        periodic=False,
        max_delay=max_delay,
        initial_delay=0.05,
    )
    try:
        consumer.run()
    finally:
        stop.set()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run the Panelbeater job worker.")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--max-delay", type=float, default=2.0, help="longest wait between queue polls (s)"
    )
    ap.add_argument("--data-dir", type=Path)
    args = ap.parse_args(argv)
    if args.data_dir:
        configure(**{**get_settings().model_dump(), "data_dir": args.data_dir})
    from models.runtime import apply_process_settings

    apply_process_settings(get_settings())  # a process started outside the CLI
    from jobs.autotrain import listen as queue_autotraining_on_commit
    from jobs.slot_predictions import listen as preannotate_slot_photos_on_commit

    queue_autotraining_on_commit()
    preannotate_slot_photos_on_commit()
    run_worker(workers=args.workers, max_delay=args.max_delay)


if __name__ == "__main__":
    main()
