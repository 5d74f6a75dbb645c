"""The scale-out path: a worker process consuming the Redis queue while the job rows live in
PostgreSQL (SQLite when no server is configured), as on a GPU machine next to the web server.

A real ``redis-server`` is started on a free loopback port (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import POSTGRES_URL, _fresh_postgres_database

pytestmark = pytest.mark.timeout(120)

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path: Path):
    if REDIS_SERVER is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but redis-server is not installed: .ci/run must install it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pytest.importorskip("redis", reason="the 'redis' package is missing: pip install -e .[redis]")
    port = _free_port()
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"redis-server did not answer on port {port}")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_store(redis_url, tmp_path: Path):
    """Settings pointing at the Redis queue and a fresh store with 4 small photos."""
    from PIL import Image as PILImage

    from core.config import configure, reset_settings
    from db.session import init_db, reset_engine, session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_folder

    database_url = _fresh_postgres_database(POSTGRES_URL) if POSTGRES_URL else ""
    configure(data_dir=tmp_path / "data", database_url=database_url, queue_url=redis_url)
    reset_engine()
    init_db()
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        PILImage.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    with session_scope() as s:
        assert import_folder(s, get_or_create_project(s), folder).images_added == 4
    yield
    reset_engine()
    reset_settings()


def test_worker_consumes_the_redis_queue(redis_store, tmp_path: Path):
    from huey import RedisHuey

    from core.config import get_settings
    from db.models import Job
    from db.session import session_scope
    from jobs.queue import get_huey
    from jobs.service import create_job
    from jobs.worker import start_worker_process

    assert isinstance(get_huey(), RedisHuey)
    with session_scope() as s:
        job_id = create_job(s, "embed", {}, created_by="test").id
    # queued in Redis, not in a SQLite queue file
    assert get_huey().pending_count() == 1
    assert not (Path(get_settings().data_dir) / "queue.db").exists()

    worker = start_worker_process(get_settings(), max_delay=0.2, log_file=tmp_path / "worker.log")
    try:
        deadline = time.time() + 60
        status = None
        while time.time() < deadline:
            with session_scope() as s:
                job = s.get(Job, job_id)
                status, result, error = job.status.value, dict(job.result or {}), job.error
            if status in ("completed", "failed"):
                break
            time.sleep(0.1)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert status == "completed", f"job ended {status}: {error}\nworker log:\n{log[-2000:]}"
        assert result["images"] == 4
        assert "redis://127.0.0.1" in log  # the worker says which queue it consumes
        assert get_huey().pending_count() == 0
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def test_a_redis_url_without_the_package_says_what_to_install(monkeypatch):
    import builtins

    from jobs.queue import _make_huey

    real_import = builtins.__import__

    def no_redis(name, *args, **kwargs):
        if name == "redis" or name.startswith("redis."):
            raise ImportError("No module named 'redis'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_redis)
    _make_huey.cache_clear()
    with pytest.raises(RuntimeError, match=r"pip install redis"):
        _make_huey("redis://127.0.0.1:1/0")
    _make_huey.cache_clear()
