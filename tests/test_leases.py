"""Queue leases: two people asking at once never get the same photo, on SQLite and PostgreSQL;
leases expire, are released by next, skip, sign-out and a lead; a held photo opens read-only."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from browser_helpers import api_client, free_port, image_rows
from durability_helpers import KillableServer, Workspace
from lease_helpers import run_load, seed_queue

from db.models import Image, User
from services.accounts.users import Permission
from services.errors import NotFound


def _photos(session, project, n: int) -> list[int]:
    rows = image_rows(project.id, n, sha256="{i:064d}")
    session.add_all(rows)
    session.commit()
    return [r.id for r in rows]


def _users(session, n: int, role: str = "annotator") -> list[User]:
    from services.accounts.users import create_user

    users = [create_user(session, username=f"u{i}", password="x" * 12, role=role) for i in range(n)]
    session.commit()
    return users


@pytest.fixture
def queue(any_store):
    """A project of 30 photos in import order and 6 annotators, on both databases."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project

    with session_scope() as session:
        project = get_or_create_project(session)
        ids = _photos(session, project, 30)
        users = _users(session, 6)
    return project, ids, users


def _next(project, user, after_id=None, now=None, direction="next"):
    """One hand-out in a session of its own, as one request would make it."""
    from db.session import session_scope
    from services.labelling import leases

    with session_scope() as session:
        step = leases.queue_step(session, project.id, user, direction, after_id=after_id, now=now)
    return step["image"]["id"] if step["image"] else None


def _held(project) -> dict[int, str]:
    from db.session import session_scope
    from services.labelling.leases import list_leases

    with session_scope() as session:
        return {x["image_id"]: x["user"] for x in list_leases(session, project.id)}


def test_simultaneous_next_never_hands_one_photo_to_two(queue) -> None:
    project, ids, users = queue
    current: dict[int, int | None] = {u.id: None for u in users}
    for _round in range(3):
        barrier = threading.Barrier(len(users))
        got: dict[int, int | None] = {}
        errors: list[BaseException] = []

        def ask(user: User, barrier=barrier, got=got, errors=errors) -> None:
            try:
                barrier.wait()
                got[user.id] = _next(project, user, after_id=current[user.id])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=ask, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        photos = list(got.values())
        assert None not in photos and len(set(photos)) == len(users), got
        # Each annotator holds exactly the photo it was given, and nothing else.
        names = {u.id: u.username for u in users}
        assert _held(project) == {p: names[u] for u, p in got.items()}
        current.update(got)


def test_the_queue_order_is_kept_and_held_photos_are_passed_over(queue) -> None:
    project, ids, (a, b, *_) = queue
    assert _next(project, a) == ids[0]
    assert _next(project, b) == ids[1]  # ids[0] is a's
    assert _next(project, b, after_id=ids[1]) == ids[2]
    assert _next(project, a, after_id=ids[0]) == ids[1]  # b left ids[1]: it is free again
    assert _next(project, b, after_id=ids[2], direction="previous") == ids[0]  # a left it
    # At the end of the queue the user stays on their photo, and keeps it.
    assert _next(project, a, after_id=ids[-2]) == ids[-1]
    assert _next(project, a, after_id=ids[-1]) is None
    assert _next(project, b, after_id=ids[-3]) == ids[-2]
    assert _next(project, b, after_id=ids[-2]) is None  # ids[-1] is still a's
    assert _held(project) == {ids[-1]: a.username, ids[-2]: b.username}


def test_an_expired_lease_is_handed_out_again(queue) -> None:
    from core.config import get_settings

    project, ids, (a, b, c, *_) = queue
    ttl = get_settings().lease_ttl_seconds
    t0 = 1_000_000.0
    assert _next(project, a, now=t0) == ids[0]
    assert _next(project, b, now=t0 + ttl - 1) == ids[1]  # a's lease still lives
    assert _next(project, c, now=t0 + ttl + 1) == ids[0]  # a's has run out


def test_activity_renews_and_peeking_hands_out_nothing(queue) -> None:
    from db.session import session_scope
    from services.labelling import leases

    project, ids, (a, b, *_) = queue
    t0 = 1_000_000.0
    assert _next(project, a, now=t0) == ids[0]
    with session_scope() as session:
        image = session.get(Image, ids[0])
        assert leases.take(session, image, a, now=t0 + 600)  # a save, ten minutes on
        assert (image.lease_since, image.lease_until) == (t0, t0 + 600 + 900)
        looked = leases.queue_step(session, project.id, b, "next", lease=False, now=t0 + 1000)
        assert looked["image"]["id"] == ids[1]
        assert not leases.take(session, image, b, now=t0 + 1400)  # still a's
    assert _next(project, b, now=t0 + 1400) == ids[1]  # the peek leased nothing


def test_a_save_writes_the_lease_only_once_it_has_run_half_its_time(queue) -> None:
    from db.session import session_scope
    from services.labelling import leases

    project, ids, (a, b, *_) = queue
    t0 = 1_000_000.0
    assert _next(project, a, now=t0) == ids[0]
    with session_scope() as session:
        image = session.get(Image, ids[0])
        # a save a minute on: the lease has 14 of its 15 minutes left, nothing is written
        assert leases.take(session, image, a, now=t0 + 60, lazily=True)
        assert image.lease_until == t0 + 900
        # eight minutes on, under half is left: renewed from then
        assert leases.take(session, image, a, now=t0 + 480, lazily=True)
        assert (image.lease_since, image.lease_until) == (t0, t0 + 480 + 900)
        # someone else's save never skips the rule: b does not get a's photo
        assert not leases.take(session, image, b, now=t0 + 500, lazily=True)


def test_release_on_skip_sign_out_and_by_a_lead(queue) -> None:
    from db.session import session_scope
    from services.accounts.users import issue_token
    from services.labelling import leases

    project, ids, (a, b, c, *_) = queue
    assert _next(project, a) == ids[0]
    assert _next(project, a, after_id=ids[0]) == ids[1]  # skip: ids[0] goes back to the queue
    assert _next(project, b) == ids[0]
    with session_scope() as session:
        token = issue_token(session, session.get(User, a.id))
    with session_scope() as session:
        assert leases.sign_out(session, token)
    assert _held(project) == {ids[0]: b.username}
    assert _next(project, c) == ids[1]
    with session_scope() as session:
        assert leases.release_image(session, project.id, ids[0]) is True
        assert leases.release_image(session, project.id, ids[0]) is False
        with pytest.raises(NotFound, match="image_id"):
            leases.release_image(session, project.id, 10**9)
    assert _held(project) == {ids[1]: c.username}


def test_a_held_photo_opens_read_only_with_the_holders_name(queue) -> None:
    from db.session import session_scope
    from services.labelling import leases

    project, ids, (a, b, *_) = queue
    assert _next(project, a) == ids[0]
    with session_scope() as session:
        image = session.get(Image, ids[0])
        assert leases.open_by_id(session, image, b) == {"read_only": True, "held_by": "u0"}
        assert leases.open_by_id(session, session.get(Image, ids[3]), b)["read_only"] is False
        assert leases.open_by_id(session, image, b)["read_only"] is True  # b keeps ids[3]
        assert _held(project) == {ids[0]: "u0", ids[3]: "u1"}
        assert leases.open_by_id(session, image, a) == {"read_only": False, "held_by": None}
        other = session.get(Image, ids[5])
        assert leases.open_by_id(session, other, b) == {"read_only": False, "held_by": None}
    assert _held(project) == {ids[0]: "u0", ids[5]: "u1"}


def test_http_leases_roles_lead_view_and_read_only(tmp_path: Path) -> None:
    client, seeded, login = api_client(tmp_path / "data", n_synthetic=3)
    ann, fraud, lead = login("annotator"), login("fraud_analyst"), login("lead")
    first = client.get("/api/queue/next", headers=ann).json()["image"]
    assert first["id"] == seeded.image_ids[0] and first["read_only"] is False
    peek = client.get("/api/queue/next?lease=false", headers=fraud).json()["image"]
    assert peek["id"] == seeded.image_ids[1]
    second = client.get("/api/queue/next", headers=fraud).json()["image"]
    assert second["id"] == seeded.image_ids[1]
    held = client.get(f"/api/images/{first['id']}", headers=fraud).json()
    assert held["read_only"] is True and held["held_by"] == "annotator1"

    assert client.get("/api/leases", headers=ann).status_code == 403
    assert client.delete(f"/api/leases/{first['id']}", headers=ann).status_code == 403
    rows = client.get("/api/leases", headers=lead).json()
    assert [(r["image_id"], r["user"]) for r in rows] == [
        (first["id"], "annotator1"),
        (second["id"], "fraud_analyst1"),
    ]
    assert 0 < rows[0]["seconds_left"] <= 900
    assert client.delete(f"/api/leases/{first['id']}", headers=lead).json() == {"released": 1}
    assert client.delete("/api/leases/999999", headers=lead).status_code == 404
    mine = client.get(f"/api/images/{first['id']}", headers=fraud).json()
    assert mine["read_only"] is False  # freed by the lead, now the fraud analyst's

    # A save renews; signing out and the workspace closing give photos back.
    put = client.put(
        f"/api/images/{mine['id']}/annotations",
        json={"version": mine["version"], "annotations": []},
        headers=fraud,
    )
    assert put.status_code == 200, put.text
    assert client.post("/api/leases/release", headers=fraud).json() == {"released": 1}
    client.get("/api/queue/next", headers=ann)
    client.post("/api/logout", headers=ann)
    assert client.get("/api/leases", headers=lead).json() == []


def test_annotators_over_http_never_share_a_photo(any_store, tmp_path: Path) -> None:
    """The load test, small: 6 annotators x 5 photos against a real server at once."""
    from core.config import get_settings

    settings = get_settings()
    tokens = seed_queue(settings.data_dir, photos=36, annotators=6)
    server = KillableServer(
        Workspace(settings.data_dir, settings.database_url, [], tokens), port=free_port()
    )
    server.start()
    try:
        result = run_load(server.url, tokens, photos_each=5)
    finally:
        server.stop()
    assert result.errors == []
    assert len(result.handouts) == 30
    assert result.doubles() == {}, result.doubles()


def test_the_dashboard_section_lists_and_releases(queue) -> None:
    from annotator import leases_panel

    project, ids, (a, b, *_) = queue
    _next(project, a)
    _next(project, b)
    users = {"lead-token": a}  # the panel asks its caller for the user, naming a permission
    asked: list[Permission] = []

    def require(token: str, permission: Permission) -> User:
        asked.append(permission)
        return users[token]

    table = leases_panel.rows(require, "lead-token")
    assert [(r[0], r[3]) for r in table] == [(ids[0], "u0"), (ids[1], "u1")]
    assert 14.9 <= table[0][5] <= 15.0
    assert leases_panel.release(require, "lead-token", ids[1]) == (
        f"Photo {ids[1]} is free: the queue hands it out again."
    )
    assert "not held" in leases_panel.release(require, "lead-token", ids[1])
    assert "Not released" in leases_panel.release(require, "lead-token", 10**9)
    assert set(asked) == {Permission.dashboard}
    assert [r[0] for r in leases_panel.rows(require, "lead-token")] == [ids[0]]


def test_photos_with_kept_edits_stay_leased_while_offered(tmp_path: Path) -> None:
    """A closed tab left edits of photo A in the browser; the new tab names A in X-Kept-Edits,
    so the queue step, opening another photo and saving it all keep A leased to the user."""
    client, seeded, login = api_client(tmp_path / "data", n_synthetic=4)
    ann, fraud, lead = login("annotator"), login("fraud_analyst"), login("lead")
    first = client.get("/api/queue/next", headers=ann).json()["image"]["id"]
    keep = {**ann, "X-Kept-Edits": str(first)}

    def held() -> dict[int, str]:
        return {r["image_id"]: r["user"] for r in client.get("/api/leases", headers=lead).json()}

    second = client.get(f"/api/queue/next?after_id={first}", headers=keep).json()["image"]
    assert second["id"] != first and held() == {first: "annotator1", second["id"]: "annotator1"}
    assert client.get(f"/api/images/{first}", headers=fraud).json()["read_only"] is True
    other = client.get(f"/api/images/{seeded.image_ids[3]}", headers=keep).json()
    put = client.put(
        f"/api/images/{other['id']}/annotations",
        json={"version": other["version"], "annotations": []},
        headers=keep,
    )
    assert put.status_code == 200, put.text
    assert held() == {first: "annotator1", other["id"]: "annotator1"}
    # The offer ended (no header): the next step releases A as any other photo.
    third = client.get(f"/api/queue/next?after_id={second['id']}", headers=ann).json()["image"]
    assert held() == {third["id"]: "annotator1"} and third["id"] != first
    # An expired or released lease is taken again when the photo is named and free.
    client.get("/api/queue/next", headers=keep)
    assert held()[first] == "annotator1"
    bad = client.get("/api/queue/next", headers={**ann, "X-Kept-Edits": "3,x"})
    assert bad.status_code == 422 and "X-Kept-Edits" in bad.json()["detail"]
