"""Annotators saving while a real server is killed with kill -9, and the check that follows.

Shared by ``tests/test_durability.py`` (a short run) and ``bench/bench_durability.py`` (the
figures). Each annotator saves its own photo over and over, each save a square whose width
is the save's number, and keeps every save the server answered 200 (the version and the
geometry it returned). :func:`lost_saves` then reads the store: every acknowledged version
must be there, holding that geometry, as the current set or as a revision in the history.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
PASSWORD = "correct horse battery"


def api_app():
    """The app without its Gradio UI (``create_app(ui=False)``): the REST API with its
    middleware and commit hooks, as served, and a start in 2 s instead of Gradio's 10 (a
    uvicorn factory)."""
    from app import create_app

    return create_app(ui=False)


def fresh_postgres_database(base_url: str, prefix: str = "pb_test") -> str:
    """Create an empty database, named ``prefix`` and a random suffix, on the PostgreSQL
    server at ``base_url`` and return its URL."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def bench_database_url(backend: str) -> str:
    """A benchmark's store for ``backend``: "" (SQLite in the data dir) or, for "postgres",
    a fresh database on the server at ``PANELBEATER_TEST_POSTGRES_URL``."""
    if backend != "postgres":
        return ""
    base = os.environ.get("PANELBEATER_TEST_POSTGRES_URL", "")
    if not base:
        raise SystemExit(
            'PostgreSQL: set PANELBEATER_TEST_POSTGRES_URL (eval "$(bash .ci/postgres.sh)")'
        )
    return fresh_postgres_database(base, prefix="pb_bench")


@dataclass
class Workspace:
    data_dir: Path
    database_url: str
    image_ids: list[int]
    #: one bearer token per annotator, issued in the store (no slow sign-in per server start)
    tokens: list[str]


def seed(data_dir: Path, *, annotators: int = 10, database_url: str = "") -> Workspace:
    """A fresh store with one small photo and one annotator (and token) per annotator;
    configures this process's settings to it."""
    from browser_helpers import synthetic_photo

    from core.config import configure
    from db.session import init_db, reset_engine, session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import create_user, issue_token
    from services.data_io.imports import import_folder
    from services.labelling.images import queue_ids

    configure(data_dir=data_dir, database_url=database_url, start_worker=False)
    reset_engine()
    init_db()
    photos = data_dir / "photos"
    for i in range(annotators):
        synthetic_photo(photos / f"car_{i:02d}.jpg", width=320, height=240, seed=i)
    with session_scope() as session:
        project = get_or_create_project(session)
        import_folder(session, project, photos)
        image_ids = queue_ids(session, project.id)
        tokens = []
        for i in range(annotators):
            user = create_user(
                session, username=f"annotator{i:02d}", password=PASSWORD, role="annotator"
            )
            tokens.append(issue_token(session, user))
    return Workspace(data_dir, database_url, image_ids, tokens)


class KillableServer:
    """The app on a loopback port in a child process that leads its own process group, so
    that :meth:`kill` (SIGKILL to the group) ends it as a crash or the OOM killer would.

    ``full=True`` runs ``panelbeater serve`` (Gradio included); otherwise uvicorn serves
    :func:`api_app`. The port stays the same across restarts, so clients simply retry.
    """

    def __init__(self, ws: Workspace, *, port: int, full: bool = False) -> None:
        self.ws, self.port, self.full = ws, port, full
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def _command(self) -> list[str]:
        where = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.full:
            return [sys.executable, "-m", "cli.main", "serve", "--no-worker", *where]
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "durability_helpers:api_app",
            "--factory",
            "--app-dir",
            str(TESTS_DIR),
            "--log-level",
            "warning",
            *where,
        ]

    def cpu_seconds(self) -> float:
        """The CPU time (user and system) the server process has used so far (Linux)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait for ``/api/health``; the seconds that took."""
        import httpx

        env = {
            **os.environ,
            "PANELBEATER_DATA_DIR": str(self.ws.data_dir),
            "PANELBEATER_DATABASE_URL": self.ws.database_url,
            "PANELBEATER_START_WORKER": "false",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "OMP_NUM_THREADS": "1",
        }
        self.starts += 1
        log = open(self.ws.data_dir / f"server-{self.starts}.log", "wb")  # noqa: SIM115
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self._command(),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child holds its own copy
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log.name}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer /api/health within {timeout} s; see {log.name}")

    def kill(self) -> None:
        """kill -9 of the server's whole process group."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


def square(n: int) -> list[dict[str, Any]]:
    """The ``n``-th save's geometry: a square-ish box whose width tells the saves apart."""
    x1 = 20 + n % 280
    return [{"exterior": [[10, 10], [x1, 10], [x1, 60], [10, 60]], "holes": []}]


@dataclass
class Ack:
    """A save the server answered 200."""

    image_id: int
    version: int
    geometry: list[dict[str, Any]]
    latency_s: float
    at: float  # time.monotonic() when the answer arrived


@dataclass
class Annotator:
    """Saves ``image_id`` in a loop until ``stop`` is set, through restarts of the server."""

    url: str
    token: str
    image_id: int
    stop: threading.Event
    acks: list[Ack] = field(default_factory=list)
    transport_errors: int = 0
    conflicts: int = 0
    #: answers other than 200 and 409: (status, body); a healthy run has none
    unexpected: list[tuple[int, str]] = field(default_factory=list)

    def run(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"}
        path = f"/api/images/{self.image_id}"
        version: int | None = None
        n = 0
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    if version is None:  # after a start or an answer that never came
                        r = client.get(path)
                        if r.status_code != 200:
                            self.unexpected.append((r.status_code, r.text[:300]))
                            time.sleep(0.1)
                            continue
                        version = int(r.json()["version"])
                    n += 1
                    body = {
                        "version": version,
                        "annotations": [{"class_id": 1, "geometry": square(n)}],
                    }
                    t0 = time.monotonic()
                    r = client.put(path + "/annotations", json=body)
                    t1 = time.monotonic()
                except httpx.TransportError:
                    # the server is down (or died mid-answer): that save is unacknowledged
                    self.transport_errors += 1
                    version = None
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    detail = r.json()
                    version = int(detail["version"])
                    (saved,) = detail["annotations"]
                    self.acks.append(Ack(self.image_id, version, saved["geometry"], t1 - t0, t1))
                elif r.status_code == 409:
                    self.conflicts += 1
                    version = int(r.json()["detail"]["current_version"])
                else:
                    self.unexpected.append((r.status_code, r.text[:300]))
                    version = None

    def thread(self) -> threading.Thread:
        return threading.Thread(target=self.run, name=f"annotator-{self.image_id}", daemon=True)


@dataclass
class Check:
    """What the store holds after the run."""

    acknowledged: int
    lost: list[Ack]
    #: image id -> the revisions it has, where they are not 0..annotation_version-1
    revision_gaps: dict[int, list[int]]
    integrity: str  # SQLite's ``PRAGMA integrity_check``; "ok" on PostgreSQL


def lost_saves(ws: Workspace, acks: list[Ack]) -> Check:
    """Compare every acknowledged save with the store (read through this process's settings,
    which :func:`seed` pointed at it)."""
    from sqlalchemy import text
    from sqlmodel import select

    from db.models import AnnotationRevision, Image
    from db.session import session_scope
    from services.labelling.readers import current_annotations

    by_image: dict[int, list[Ack]] = {}
    for ack in acks:
        by_image.setdefault(ack.image_id, []).append(ack)
    lost: list[Ack] = []
    gaps: dict[int, list[int]] = {}
    with session_scope() as session:
        integrity = "ok"
        if session.get_bind().dialect.name == "sqlite":
            integrity = "; ".join(r[0] for r in session.execute(text("PRAGMA integrity_check")))
        for image_id in ws.image_ids:
            image = session.get(Image, image_id)
            revisions = session.exec(
                select(AnnotationRevision)
                .where(AnnotationRevision.image_id == image_id)
                .order_by(AnnotationRevision.revision)
            ).all()
            numbers = [r.revision for r in revisions]
            if numbers != list(range(image.annotation_version)):
                gaps[image_id] = numbers
            # the set as it stood at each version: revision v holds it until save v+1
            state = {r.revision: [a["geometry"] for a in r.annotations] for r in revisions}
            state[image.annotation_version] = [
                a.geometry for a in current_annotations(session, image_id)
            ]
            lost += [a for a in by_image.get(image_id, []) if state.get(a.version) != [a.geometry]]
    return Check(len(acks), lost, gaps, integrity)


@dataclass
class Run:
    acks: list[Ack]
    transport_errors: int
    conflicts: int
    unexpected: list[tuple[int, str]]
    kills: int
    start_s: list[float]
    #: seconds the server was up and answering (restarts excluded)
    serving_s: float
    #: ``time.monotonic()`` when the annotators started and when they were told to stop
    began: float
    ended: float


def kill_run(
    ws: Workspace,
    server: KillableServer,
    *,
    kills: int,
    up_s: float = 1.0,
    saves_between_kills: int = 30,
    tail_s: float = 0.5,
) -> Run:
    """Annotators save throughout; the server is killed with kill -9 and restarted, ``kills``
    times, each time once it has served ``up_s`` seconds and answered ``saves_between_kills``
    saves since it started (a freshly started server is slow for its first second, more so
    on a busy machine); then it serves ``tail_s`` seconds more and stops."""
    stop = threading.Event()
    annotators = [
        Annotator(server.url, token, image_id, stop)
        for token, image_id in zip(ws.tokens, ws.image_ids, strict=False)
    ]
    start_s = [server.start()]
    threads = [a.thread() for a in annotators]
    began = time.monotonic()
    for t in threads:
        t.start()
    serving = 0.0
    try:
        for _ in range(kills):
            t0 = time.monotonic()
            floor = sum(len(a.acks) for a in annotators) + saves_between_kills
            while time.monotonic() - t0 < up_s or (
                sum(len(a.acks) for a in annotators) < floor and time.monotonic() - t0 < 60
            ):
                time.sleep(0.02)
            serving += time.monotonic() - t0
            server.kill()
            start_s.append(server.start())
        time.sleep(tail_s)
        serving += tail_s
    finally:
        ended = time.monotonic()
        stop.set()
        for t in threads:
            t.join(60)
        server.stop()
    acks = [ack for a in annotators for ack in a.acks]
    return Run(
        acks=acks,
        transport_errors=sum(a.transport_errors for a in annotators),
        conflicts=sum(a.conflicts for a in annotators),
        unexpected=[u for a in annotators for u in a.unexpected],
        kills=kills,
        start_s=start_s,
        serving_s=serving,
        began=began,
        ended=ended,
    )


def latency_figures(acks: list[Ack]) -> dict[str, float]:
    """p50, p95 and max of the acknowledged saves' latencies, in milliseconds."""
    ms = sorted(a.latency_s * 1000 for a in acks)
    if not ms:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan")}
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return {"p50_ms": statistics.median(ms), "p95_ms": p95, "max_ms": ms[-1]}
