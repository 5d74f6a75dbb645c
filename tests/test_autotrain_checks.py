"""What a save costs besides its rows: the auto-training checks run at most once per interval
per project (a change inside the interval is checked at its end), and SQLite writers of one
process queue on a lock instead of SQLite's sleeping busy handler."""

from __future__ import annotations

import threading
import time

from sqlmodel import select

from db.models import Image, Job


def test_debounce_runs_the_first_call_at_once_and_one_more_at_the_interval_end() -> None:
    from jobs.autotrain import Debounce

    ran: list[float] = []
    debounce = Debounce()
    t0 = time.monotonic()
    assert debounce.now("p", 0.3, lambda: ran.append(time.monotonic() - t0)) is True
    for _ in range(5):  # five changes inside the interval: one check, at its end
        assert debounce.now("p", 0.3, lambda: ran.append(time.monotonic() - t0)) is False
    assert debounce.now("other", 0.3, lambda: None) is True  # projects are apart
    deadline = time.monotonic() + 5
    while not ran and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(ran) == 1 and 0.25 <= ran[0] < 2.0
    time.sleep(0.1)
    assert len(ran) == 1
    # a process that exits runs what waits
    assert debounce.now("r", 60, lambda: ran.append(-1.0)) is True
    assert debounce.now("r", 60, lambda: ran.append(-1.0)) is False
    debounce.flush()
    assert ran[-1] == -1.0 and len(ran) == 2
    assert debounce.now("q", 0, lambda: None) is True and debounce.now("q", 0, lambda: None)


def _label_photos(session, project, n: int) -> None:
    """Mark ``n`` more of the project's photos labelled with one damage polygon each, one
    commit per photo (as annotators save)."""
    from services.events import labels_changed
    from services.labelling.saves import save_annotation_set
    from services.labelling.statuses import set_status

    photos = session.exec(
        select(Image).where(Image.project_id == project.id, Image.status == "new")
    ).all()
    for image in photos[:n]:
        save_annotation_set(
            session,
            image_id=image.id,
            expected_version=image.annotation_version,
            annotations=[
                {"class_name": "dent", "geometry": [{"exterior": [[2, 2], [20, 2], [20, 20]]}]}
            ],
            author="tester",
        )
        set_status(session, image_id=image.id, status="labelled", author="tester")
        labels_changed(session, project.id)
        session.commit()


def test_a_save_inside_the_interval_queues_its_job_at_the_interval_end(
    db_session, project, tmp_path, monkeypatch
) -> None:
    from browser_helpers import image_rows, synthetic_photo

    from core.config import get_settings

    settings = get_settings()
    monkeypatch.setattr(settings, "autotrain_check_interval_s", 1.0)
    monkeypatch.setattr(settings, "damage_seg_autotrain_min_photos", 3)
    path = synthetic_photo(tmp_path / "car.jpg", width=64, height=48)
    db_session.add_all(image_rows(project.id, 6, path=str(path), file_name="car_{i}.jpg"))
    db_session.commit()
    jobs = lambda: db_session.exec(select(Job).where(Job.kind == "damage_seg_autotrain")).all()  # noqa: E731

    _label_photos(db_session, project, 1)  # checked at once: 1 < 3
    _label_photos(db_session, project, 2)  # inside the interval: 3 photos, checked at its end
    assert jobs() == []
    deadline = time.monotonic() + 10
    while not jobs() and time.monotonic() < deadline:
        time.sleep(0.05)
        db_session.expire_all()
    queued = jobs()
    assert len(queued) == 1 and queued[0].params == {"photos": 3}


def test_sqlite_writers_of_one_process_queue_and_start_as_soon_as_the_file_is_free(
    store,
) -> None:
    """A second writer waits on the process's lock while the first holds its transaction,
    and writes at once after the first commits (no busy-handler sleep); a transaction that
    is rolled back, or a connection returned mid-transaction, frees the lock too."""
    from sqlalchemy import text

    from db.session import get_engine, init_db

    init_db()
    engine = get_engine()
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    first_in = threading.Event()
    release = threading.Event()
    times: dict[str, float] = {}

    def first() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            first_in.set()
            release.wait(5)
            times["first_commit"] = time.monotonic()

    def second() -> None:
        first_in.wait(5)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
            times["second_wrote"] = time.monotonic()

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    first_in.wait(5)
    time.sleep(0.3)  # the second writer is waiting by now
    assert "second_wrote" not in times
    release.set()
    a.join(10)
    b.join(10)
    assert times["second_wrote"] - times["first_commit"] < 0.05
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2

    # a rollback, and a connection given back in the middle of its transaction, free the lock
    with engine.connect() as conn:
        conn.begin()
        conn.execute(text("INSERT INTO t VALUES (3)"))
        conn.rollback()
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO t VALUES (4)"))
    conn.close()  # back to the pool, which rolls it back
    done = threading.Event()

    def third() -> None:
        with engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (5)"))
        done.set()

    threading.Thread(target=third).start()
    assert done.wait(2)
    with engine.connect() as c:
        assert sorted(c.execute(text("SELECT x FROM t")).scalars()) == [1, 2, 5]
