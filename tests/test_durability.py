"""A save answered 200 is committed: the session commits before the response leaves.

FastAPI runs a ``yield`` dependency's exit after it has sent the response, so a session
committed there can be acknowledged and then lost when the process dies, and a token issued
at sign-in can be refused on its first use.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from browser_helpers import PASSWORD, free_port, seed_workspace
from durability_helpers import KillableServer, kill_run, lost_saves, seed
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

SQUARE = [{"exterior": [[10, 10], [60, 10], [60, 60], [10, 60]], "holes": []}]


def _api_app() -> FastAPI:
    from api.router import api_router

    app = FastAPI()
    app.include_router(api_router, prefix="/api")
    return app


def _slow_commits(monkeypatch, delay_s: float) -> list[float]:
    """Every session commit waits ``delay_s`` first; returns the list of the times
    (``time.monotonic()``) at which commits finished."""
    done: list[float] = []
    commit = Session.commit

    def slow_commit(self) -> None:
        time.sleep(delay_s)
        commit(self)
        done.append(time.monotonic())

    monkeypatch.setattr(Session, "commit", slow_commit)
    return done


class _ResponseClock:
    """ASGI middleware: when a response starts, record the time and run ``probe`` (what
    another connection to the store sees at that moment)."""

    def __init__(self, app, probe) -> None:
        self.app, self.probe = app, probe
        self.started: list[tuple[str, float, object]] = []

    async def __call__(self, scope, receive, send):
        async def timed_send(message):
            if message["type"] == "http.response.start":
                self.started.append((scope["path"], time.monotonic(), self.probe()))
            await send(message)

        await self.app(scope, receive, timed_send)


@pytest.mark.parametrize("route", ["save", "login"])
def test_the_response_leaves_after_the_commit(tmp_path: Path, monkeypatch, route: str) -> None:
    seeded = seed_workspace(tmp_path / "data", n_synthetic=1, n_predictions=0)
    image_id = seeded.image_ids[0]

    def probe() -> tuple[int, int]:  # (the photo's version, the number of tokens)
        with closing(sqlite3.connect(tmp_path / "data" / "panelbeater.db")) as db:
            version = db.execute("SELECT annotation_version FROM image WHERE id = ?", (image_id,))
            tokens = db.execute("SELECT count(*) FROM apitoken")
            return version.fetchone()[0], tokens.fetchone()[0]

    clock = _ResponseClock(_api_app(), probe)
    client = TestClient(clock)
    login = {"username": seeded.users["annotator"], "password": PASSWORD}
    token = client.post("/api/login", json=login).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    tokens_before = probe()[1]

    committed = _slow_commits(monkeypatch, 0.5)
    if route == "save":
        body = {"version": 0, "annotations": [{"class_id": 1, "geometry": SQUARE}]}
        r = client.put(f"/api/images/{image_id}/annotations", headers=headers, json=body)
    else:
        r = client.post("/api/login", json=login)
    assert r.status_code == 200, r.text

    _, sent_at, (version, tokens) = clock.started[-1]
    assert committed, "the request committed nothing"
    assert sent_at >= committed[-1], (
        f"the response started {committed[-1] - sent_at:.2f} s before the commit finished"
    )
    if route == "save":
        assert version == 1, "the save was answered before another connection could see it"
    else:
        assert tokens == tokens_before + 1, "the token was answered before it was stored"


def test_a_save_whose_commit_fails_is_not_answered_200(tmp_path: Path, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    seeded = seed_workspace(tmp_path / "data", n_synthetic=1, n_predictions=0)
    client = TestClient(_api_app(), raise_server_exceptions=False)
    login = {"username": seeded.users["annotator"], "password": PASSWORD}
    headers = {"Authorization": f"Bearer {client.post('/api/login', json=login).json()['token']}"}

    def failing_commit(self) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    body = {"version": 0, "annotations": [{"class_id": 1, "geometry": SQUARE}]}
    with monkeypatch.context() as patch:
        patch.setattr(Session, "commit", failing_commit)
        r = client.put(f"/api/images/{seeded.image_ids[0]}/annotations", headers=headers, json=body)
    assert r.status_code == 500
    assert client.get(f"/api/images/{seeded.image_ids[0]}", headers=headers).json()["version"] == 0


def test_300_fresh_tokens_each_work_at_once(tmp_path: Path, monkeypatch) -> None:
    """Sign in and use the token on the same connection straight away, 300 times, on a
    real server (uvicorn in this process, so the tests' cheap password hash applies)."""
    import httpx
    import uvicorn

    seeded = seed_workspace(tmp_path / "data", n_synthetic=1, n_predictions=0)
    # A commit as slow as a busy disk's: a commit that ran after the answer would lose
    # the race to the token's first use nearly every time, not 1 in 300.
    _slow_commits(monkeypatch, 0.005)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_api_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and serving.is_alive(), "uvicorn did not start"
        time.sleep(0.05)

    refused: list[tuple[str, int]] = []
    roles = ["annotator", "reviewer", "lead", "admin", "fraud_analyst"]

    def sign_in_and_use(worker: int) -> None:
        username = seeded.users[roles[worker % len(roles)]]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(30):
                r = client.post("/api/login", json={"username": username, "password": PASSWORD})
                assert r.status_code == 200, r.text
                me = client.get("/api/me", headers={"Authorization": f"Bearer {r.json()['token']}"})
                if me.status_code != 200:
                    refused.append((username, me.status_code))

    try:
        workers = [threading.Thread(target=sign_in_and_use, args=(i,)) for i in range(10)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
    finally:
        server.should_exit = True
        serving.join(10)
    assert refused == [], f"{len(refused)} of 300 fresh tokens were refused: {refused[:5]}"


def test_no_acknowledged_save_is_lost_to_kill_9(tmp_path: Path) -> None:
    """10 annotators save while the server is killed with kill -9 three times."""
    ws = seed(tmp_path / "data", annotators=10)
    server = KillableServer(ws, port=free_port())
    run = kill_run(ws, server, kills=3, saves_between_kills=30)
    assert run.unexpected == [], run.unexpected[:5]
    assert len(run.acks) >= 3 * 30, f"too few saves to tell anything: {len(run.acks)}"
    assert run.transport_errors >= run.kills, "the kills interrupted nothing"
    check = lost_saves(ws, run.acks)
    assert check.integrity == "ok"
    assert check.revision_gaps == {}
    assert check.lost == [], (
        f"{len(check.lost)} of {check.acknowledged} acknowledged saves are gone: {check.lost[:3]}"
    )
