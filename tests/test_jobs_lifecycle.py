"""Job lifecycle with a real Huey worker process: complete, cancel, kill -9 and retry."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATASETS, requires_datasets
from sqlmodel import func, select

pytestmark = [requires_datasets, pytest.mark.timeout(120)]

PHOTOS = SHARED_DATASETS / "car_parts_dsmlr" / "trainingset" / "JPEGImages"


@pytest.fixture
def photos_project(store, tmp_path):
    """A store with 12 real photos imported."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_folder

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(PHOTOS.glob("*.jpg"))[:12]:
        shutil.copy(p, folder / p.name)
    with session_scope() as s:
        report = import_folder(s, get_or_create_project(s), folder)
        assert report.images_added == 12
    return store


@pytest.fixture
def worker(photos_project, tmp_path):
    from core.config import get_settings
    from jobs.worker import start_worker_process

    procs = []

    def start():
        p = start_worker_process(get_settings(), max_delay=0.2, log_file=tmp_path / "worker.log")
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()


def job_state(job_id: int):
    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        j = s.get(Job, job_id)
        return j.status.value, j.progress, dict(j.result or {}), j.error, j.stage


def wait_for(job_id: int, cond, timeout: float = 60.0, what: str = ""):
    t0 = time.time()
    seen = []
    while time.time() - t0 < timeout:
        st = job_state(job_id)
        seen.append(st[:2])
        if cond(st):
            return st, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {what}; last states {seen[-5:]}")


def new_job(kind: str, params: dict):
    from db.session import session_scope
    from jobs.service import create_job

    with session_scope() as s:
        return create_job(s, kind, params, created_by="test").id


def versions_count() -> int:
    from db.models import ModelVersion
    from db.session import session_scope

    with session_scope() as s:
        return s.exec(select(func.count()).select_from(ModelVersion)).one()


def test_job_runs_reports_progress_and_completes(worker):
    from db.models import Image
    from db.session import session_scope
    from services.training.descriptors import descriptor_path

    worker()
    job_id = new_job("embed", {"pause_s": 0.05})
    st, seen = wait_for(job_id, lambda s: s[0] == "completed", what="completed")
    assert st[1] == 1.0 and st[2]["images"] == 12 and st[2]["descriptors_computed"] == 12
    # progress was observed between 0 and 1 while it ran
    assert any(0 < p < 1 and s == "running" for s, p in seen)
    with session_scope() as s:
        shas = [im.sha256 for im in s.exec(select(Image)).all()]
    assert all(descriptor_path(h).is_file() for h in shas)
    from db.models import Job
    from jobs.service import read_log

    with session_scope() as s:
        log = read_log(s.get(Job, job_id))
    assert "started" in log and "completed" in log


def test_cancel_running_and_queued_jobs(worker):
    from db.session import session_scope
    from jobs.service import cancel_job

    worker()
    running = new_job("embed", {"pause_s": 0.4, "force": True})
    queued = new_job("embed", {"pause_s": 0.0, "force": True})
    wait_for(running, lambda s: s[0] == "running" and s[1] > 0, what="running")
    with session_scope() as s:
        assert cancel_job(s, queued).status.value == "cancelled"
        assert cancel_job(s, running).status.value == "cancelled"
    time.sleep(1.5)  # past the next progress report
    st = job_state(running)
    assert st[0] == "cancelled" and st[1] < 1.0
    assert job_state(queued)[0] == "cancelled" and job_state(queued)[1] == 0.0


def test_killed_worker_leaves_job_failed_and_retry_completes(worker, tmp_path):
    from core.config import get_settings
    from db.session import session_scope
    from jobs.service import retry_job
    from services.training.registry import artifact_tmp_path

    before = versions_count()
    w = worker()
    job_id = new_job("embed", {"pause_s": 0.3, "force": True})
    wait_for(job_id, lambda s: s[0] == "running" and s[1] > 0.1, what="running")
    # a half-written artifact like a training run would leave
    partial = artifact_tmp_path("yolo_seg")
    partial.write_bytes(b"half a checkpoint")
    os.kill(w.pid, signal.SIGKILL)
    w.wait(timeout=10)
    assert job_state(job_id)[0] == "running"  # nobody has noticed yet
    worker()
    st, _ = wait_for(job_id, lambda s: s[0] == "failed", timeout=30, what="failed")
    assert "died" in st[3] and "retry" in st[3].lower()
    assert versions_count() == before
    assert not partial.exists()
    assert not list((get_settings().artifacts_dir).glob("*/*-v*"))
    with session_scope() as s:
        assert retry_job(s, job_id).status.value == "queued"
    st, _ = wait_for(job_id, lambda s: s[0] == "completed", what="completed after retry")
    from db.models import Job

    with session_scope() as s:
        assert s.get(Job, job_id).attempts == 2
    assert versions_count() == before


def test_bad_job_requests_are_refused(store):
    from db.session import session_scope
    from jobs.service import create_job, retry_job
    from services.errors import Invalid

    with session_scope() as s:
        with pytest.raises(Invalid, match="unknown job kind"):
            create_job(s, "dance", {})
        with pytest.raises(Invalid, match="params.stage"):
            create_job(s, "train", {})
        with pytest.raises(Invalid, match="strategy"):
            create_job(s, "select", {"strategy": "psychic", "k": 3})
        job = create_job(s, "select", {"strategy": "random", "k": 3})
        with pytest.raises(Invalid, match="only failed or cancelled"):
            retry_job(s, job.id)
    assert Path(store / "queue.db").is_file()
