"""Every /api route: sign-in required, roles, the 409 path, 422 bodies, safe file serving, escaping."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from browser_helpers import PASSWORD, api_client
from PIL import Image as PILImage

SQUARE = [{"exterior": [[10, 10], [60, 10], [60, 60], [10, 60]], "holes": []}]


@pytest.fixture
def env(tmp_path: Path):
    return api_client(tmp_path / "data", n_synthetic=3)


def test_health_needs_no_login_and_login_checks_password(env) -> None:
    client, seeded, _ = env
    assert client.get("/api/health").json()["status"] == "ok"
    bad = client.post("/api/login", json={"username": "annotator1", "password": "wrong password"})
    assert bad.status_code == 401
    unknown = client.post("/api/login", json={"username": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401
    ok = client.post("/api/login", json={"username": "lead1", "password": PASSWORD}).json()
    assert ok["role"] == "lead" and "dashboard" in ok["permissions"]
    me = client.get("/api/me", headers={"Authorization": f"Bearer {ok['token']}"}).json()
    assert me["username"] == "lead1"
    client.post("/api/logout", headers={"Authorization": f"Bearer {ok['token']}"})
    assert (
        client.get("/api/me", headers={"Authorization": f"Bearer {ok['token']}"}).status_code == 401
    )


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/me"),
        ("get", "/api/images"),
        ("get", "/api/images/1"),
        ("get", "/api/images/1/file"),
        ("put", "/api/images/1/annotations"),
        ("post", "/api/images/1/status"),
        ("post", "/api/images/1/assist"),
        ("post", "/api/predictions/1/state"),
        ("get", "/api/queue/next"),
        ("get", "/api/queue/previous"),
        ("get", "/api/taxonomy"),
        ("get", "/api/export/coco"),
        ("get", "/api/stats"),
        ("post", "/api/retrain"),
        ("get", "/api/users"),
        ("post", "/api/users"),
        ("post", "/api/images/upload"),
        ("get", "/api/me/recent-classes"),
        ("put", "/api/me/recent-classes"),
    ],
)
def test_every_route_needs_a_token(env, method: str, path: str) -> None:
    client, _, _ = env
    r = getattr(client, method)(path, **({"json": {}} if method in ("put", "post") else {}))
    assert r.status_code == 401, (path, r.status_code)
    r = getattr(client, method)(path, headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401


def test_list_get_and_queue(env) -> None:
    client, seeded, login = env
    h = login("annotator")
    listing = client.get("/api/images?limit=2", headers=h).json()
    assert listing["total"] == 3 and len(listing["items"]) == 2
    assert client.get("/api/images?status=new", headers=h).json()["total"] == 3
    assert client.get("/api/images?status=bogus", headers=h).status_code == 422
    first = seeded.image_ids[0]
    detail = client.get(f"/api/images/{first}", headers=h).json()
    assert detail["version"] == 0 and detail["annotations"] == []
    assert {p["state"] for p in detail["predictions"]} == {"pending"} and len(
        detail["predictions"]
    ) == 3
    nxt = client.get("/api/queue/next", headers=h).json()
    assert nxt["image"]["id"] == first and nxt["position"] == 1 and nxt["progress"]["total"] == 3
    nxt2 = client.get(f"/api/queue/next?after_id={first}", headers=h).json()
    assert nxt2["image"]["id"] == seeded.image_ids[1]
    prev = client.get(f"/api/queue/previous?after_id={seeded.image_ids[1]}", headers=h).json()
    assert prev["image"]["id"] == first
    flagged = client.get("/api/queue/next?flagged=true", headers=h).json()
    assert flagged["queue_length"] == 1 and flagged["image"]["id"] == first
    assert client.get("/api/images/999999", headers=h).status_code == 404
    tax = client.get("/api/taxonomy", headers=h).json()
    assert tax["counts"] == {"damage": 26, "fake": 7, "part": 61}


def test_save_then_stale_version_gets_409_with_both_versions(env) -> None:
    client, seeded, login = env
    h = login("annotator")
    img = seeded.image_ids[0]
    pred = seeded.prediction_ids[0]
    r = client.put(
        f"/api/images/{img}/annotations",
        headers=h,
        json={
            "version": 0,
            "annotations": [
                {
                    "class_id": 26,
                    "geometry": SQUARE,
                    "source": "accepted_prediction",
                    "prediction_id": pred,
                }
            ],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["version"] == 1 and len(body["annotations"]) == 1 and body["status"] == "in_progress"
    )
    assert next(p for p in body["predictions"] if p["id"] == pred)["state"] == "accepted"
    # removing the annotation (e.g. an undo) makes the prediction pending again
    undone = client.put(
        f"/api/images/{img}/annotations", headers=h, json={"version": 1, "annotations": []}
    ).json()
    assert next(p for p in undone["predictions"] if p["id"] == pred)["state"] == "pending"
    redone = client.put(
        f"/api/images/{img}/annotations",
        headers=h,
        json={
            "version": 2,
            "annotations": [
                {
                    "class_id": 26,
                    "geometry": SQUARE,
                    "source": "accepted_prediction",
                    "prediction_id": pred,
                }
            ],
        },
    )
    assert redone.json()["version"] == 3
    stale = client.put(
        f"/api/images/{img}/annotations",
        headers=h,
        json={"version": 0, "annotations": [{"class_id": 1, "geometry": SQUARE}]},
    )
    assert stale.status_code == 409
    detail = stale.json()["detail"]
    assert detail["your_version"] == 0 and detail["current_version"] == 3
    assert (
        detail["current_annotations"][0]["class_id"] == 26
        and "saved by someone else" in detail["message"]
    )
    # the refused save changed nothing
    assert client.get(f"/api/images/{img}", headers=h).json()["annotations"][0]["class_id"] == 26


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_stale_save_naming_a_deleted_instance_is_a_conflict(env, keep_going: bool) -> None:
    """B holds version 1 with instance ``kept``; A deletes it and saves (version 2). B's save of
    version 1 still naming ``kept`` is stale first: 409 with both versions, not 422 about the id."""
    client, seeded, login = env
    h = login("annotator")
    img = seeded.image_ids[0]
    url = f"/api/images/{img}/annotations"
    first = client.put(
        url, headers=h, json={"version": 0, "annotations": [{"class_id": 3, "geometry": SQUARE}]}
    )
    kept = first.json()["annotations"][0]
    assert client.put(url, headers=h, json={"version": 1, "annotations": []}).status_code == 200
    stale = client.put(
        url,
        headers=h,
        json={
            "version": 1,
            "keep_going": keep_going,
            "annotations": [{"id": kept["id"], "class_id": 4, "geometry": SQUARE}],
        },
    )
    assert stale.status_code == 409, stale.text
    detail = stale.json()["detail"]
    assert detail["your_version"] == 1 and detail["current_version"] == 2
    assert detail["current_annotations"] == []
    assert client.get(f"/api/images/{img}", headers=h).json()["version"] == 2


def test_a_stale_save_over_a_new_fake_flag_is_a_conflict(env) -> None:
    """A fraud analyst flags an instance (version 2) while an annotator holds version 1: the
    annotator's stale save, which still has the instance unflagged, is 409, not 403."""
    client, seeded, login = env
    annotator, analyst = login("annotator"), login("fraud_analyst")
    img = seeded.image_ids[0]
    url = f"/api/images/{img}/annotations"
    first = client.put(
        url,
        headers=annotator,
        json={"version": 0, "annotations": [{"class_id": 3, "geometry": SQUARE}]},
    )
    item = first.json()["annotations"][0]
    flagged = {"id": item["id"], "class_id": 3, "geometry": SQUARE, "attributes": {"fake": True}}
    r = client.put(url, headers=analyst, json={"version": 1, "annotations": [flagged]})
    assert r.status_code == 200, r.text
    mine = {
        "id": item["id"],
        "class_id": 3,
        "geometry": SQUARE,
        "attributes": {"severity": "minor"},
    }
    stale = client.put(url, headers=annotator, json={"version": 1, "annotations": [mine]})
    assert stale.status_code == 409, stale.text
    detail = stale.json()["detail"]
    assert detail["your_version"] == 1 and detail["current_version"] == 2
    assert detail["current_annotations"][0]["attributes"]["fake"] is True


@pytest.mark.parametrize(
    "annotation,needle",
    [
        ({"class_id": 1, "geometry": [{"exterior": [[0, 0], [5, 5]], "holes": []}]}, "3"),
        ({"class_id": 9999, "geometry": SQUARE}, "taxonomy"),
        ({"class_name": "not_a_class", "geometry": SQUARE}, "taxonomy"),
        (
            {
                "class_id": 1,
                "geometry": [{"exterior": [[0, 0], [float("nan"), 5], [5, 9]], "holes": []}],
            },
            "NaN",
        ),
        ({"class_id": 1, "geometry": "square"}, "geometry"),
        (
            {"class_id": 1, "geometry": SQUARE, "attributes": {"severity": "apocalyptic"}},
            "severity",
        ),
        ({"class_id": 1.5, "geometry": SQUARE}, "class_id must be a whole number"),
        ({"class_id": True, "geometry": SQUARE}, "class_id must be a whole number"),
        ({"class_id": 2**70, "geometry": SQUARE}, "class_id must be between"),
        ({"class_id": 1, "geometry": SQUARE, "prediction_id": 424242}, "prediction_id 424242"),
        ({"class_id": 1, "geometry": SQUARE, "id": 2**70}, "id must be between"),
    ],
)
def test_bad_bodies_get_422_with_a_message(env, annotation: dict, needle: str) -> None:
    client, seeded, login = env
    h = {**login("annotator"), "Content-Type": "application/json"}
    raw = json.dumps({"version": 0, "annotations": [annotation]})  # json.dumps writes NaN as NaN
    r = client.put(f"/api/images/{seeded.image_ids[0]}/annotations", headers=h, content=raw)
    assert r.status_code == 422, r.text
    assert needle.lower() in json.dumps(r.json()["detail"]).lower()
    missing = client.put(
        f"/api/images/{seeded.image_ids[0]}/annotations", headers=h, json={"annotations": []}
    )
    assert missing.status_code == 422


@pytest.mark.parametrize("version", [2**70, -1, 1.5, True, "0"])
def test_a_version_out_of_range_or_not_a_whole_number_gets_422(env, version) -> None:
    client, seeded, login = env
    r = client.put(
        f"/api/images/{seeded.image_ids[0]}/annotations",
        headers=login("annotator"),
        json={"version": version, "annotations": []},
    )
    assert r.status_code == 422 and "version" in json.dumps(r.json()["detail"])


def test_script_in_note_is_stored_as_text_and_fake_flag_needs_fraud_role(env) -> None:
    client, seeded, login = env
    img = seeded.image_ids[1]
    note = "<script>alert(1)</script>"
    fake = {"class_id": 26, "geometry": SQUARE, "attributes": {"fake": True, "fake_note": note}}
    denied = client.put(
        f"/api/images/{img}/annotations",
        headers=login("annotator"),
        json={"version": 0, "annotations": [fake]},
    )
    assert denied.status_code == 403
    h = login("fraud_analyst")
    ok = client.put(
        f"/api/images/{img}/annotations", headers=h, json={"version": 0, "annotations": [fake]}
    )
    assert ok.status_code == 200
    r = client.get(f"/api/images/{img}", headers=h)
    assert r.headers["content-type"].startswith("application/json")
    saved = r.json()["annotations"][0]
    assert saved["attributes"]["fake_note"] == note
    # an annotator may edit the polygon (keeping the verdict) but not clear the flag
    ann = login("annotator")
    keep = {**saved, "geometry": [{"exterior": [[0, 0], [70, 0], [70, 70]], "holes": []}]}
    ok2 = client.put(
        f"/api/images/{img}/annotations", headers=ann, json={"version": 1, "annotations": [keep]}
    )
    assert ok2.status_code == 200, ok2.text
    cleared = {**keep, "attributes": {}}
    assert (
        client.put(
            f"/api/images/{img}/annotations",
            headers=ann,
            json={"version": 2, "annotations": [cleared]},
        ).status_code
        == 403
    )


def test_status_workflow_and_roles(env) -> None:
    client, seeded, login = env
    img = seeded.image_ids[0]
    ann = login("annotator")
    assert (
        client.post(
            f"/api/images/{img}/status", headers=ann, json={"status": "labelled"}
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/api/images/{img}/status", headers=ann, json={"status": "reviewed"}
        ).status_code
        == 403
    )
    rev = login("reviewer")
    no_comment = client.post(f"/api/images/{img}/status", headers=rev, json={"status": "rejected"})
    assert no_comment.status_code == 422 and "comment" in no_comment.json()["detail"]
    r = client.post(
        f"/api/images/{img}/status",
        headers=rev,
        json={"status": "rejected", "comment": "missed a dent"},
    )
    assert r.json()["status"] == "rejected" and r.json()["review_comment"] == "missed a dent"
    bogus = client.post(f"/api/images/{img}/status", headers=rev, json={"status": "done"})
    assert bogus.status_code == 422


def test_prediction_state(env) -> None:
    client, seeded, login = env
    h = login("annotator")
    pid = seeded.prediction_ids[2]
    assert (
        client.post(f"/api/predictions/{pid}/state", headers=h, json={"state": "rejected"}).json()[
            "state"
        ]
        == "rejected"
    )
    assert (
        client.post(
            "/api/predictions/99999/state", headers=h, json={"state": "rejected"}
        ).status_code
        == 404
    )
    assert (
        client.post(f"/api/predictions/{pid}/state", headers=h, json={"state": "maybe"}).status_code
        == 422
    )


def test_image_file_caching_and_downscale(env) -> None:
    client, seeded, login = env
    h = login("annotator")
    img = seeded.image_ids[0]
    full = client.get(f"/api/images/{img}/file", headers=h)
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert "max-age" in full.headers["cache-control"]
    assert PILImage.open(io.BytesIO(full.content)).size == (640, 480)
    small = client.get(f"/api/images/{img}/file?max_side=200", headers=h)
    assert PILImage.open(io.BytesIO(small.content)).size == (200, 150)
    etag = small.headers["etag"]
    again = client.get(f"/api/images/{img}/file?max_side=200", headers={**h, "If-None-Match": etag})
    assert again.status_code == 304
    # a token in the URL would end up in access logs: only the header is accepted
    token = h["Authorization"].split()[1]
    assert client.get(f"/api/images/{img}/file?max_side=200&token={token}").status_code == 401


@pytest.mark.parametrize(
    "attempt",
    [
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    ],
)
def test_traversal_in_the_url_is_refused(env, attempt: str) -> None:
    client, _, login = env
    r = client.get(f"/api/images/{attempt}/file", headers=login("annotator"))
    assert r.status_code in (404, 422)
    assert b"root:" not in r.content


def test_symlink_out_of_the_folder_is_refused(env, tmp_path: Path) -> None:
    from db.models import Image
    from db.session import session_scope

    client, seeded, login = env
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"top secret bytes")
    img = seeded.image_ids[2]
    with session_scope() as s:
        row = s.get(Image, img)
        path = Path(row.path)
    path.unlink()
    os.symlink(secret, path)
    r = client.get(f"/api/images/{img}/file", headers=login("annotator"))
    assert r.status_code == 403 and b"top secret" not in r.content


def test_exports_dashboard_and_roles(env) -> None:
    client, seeded, login = env
    ann = login("annotator")
    assert client.get("/api/export/coco", headers=ann).status_code == 403
    assert client.get("/api/stats", headers=ann).status_code == 403
    assert client.post("/api/retrain", headers=ann).status_code == 403
    client.put(
        f"/api/images/{seeded.image_ids[0]}/annotations",
        headers=ann,
        json={"version": 0, "annotations": [{"class_id": 3, "geometry": SQUARE}]},
    )
    lead = login("lead")
    coco = client.get("/api/export/coco", headers=lead)
    assert coco.status_code == 200 and len(coco.json()["annotations"]) == 1
    assert client.get("/api/export/pascal", headers=lead).status_code == 404
    stats = client.get("/api/stats", headers=lead).json()
    assert (
        stats["throughput"][0]["author"] == "annotator1"
        and stats["throughput"][0]["instances"] == 1
    )
    assert stats["models"][0]["name"] == "albert-v1"


def test_assist_validates_prompts(env) -> None:
    client, seeded, login = env
    h = login("annotator")
    img = seeded.image_ids[0]
    assert client.post(f"/api/images/{img}/assist", headers=h, json={}).status_code == 422
    r = client.post(f"/api/images/{img}/assist", headers=h, json={"points": [[1, 2]], "labels": []})
    assert r.status_code == 422
    r = client.post(f"/api/images/{img}/assist", headers=h, json={"box": [1, 2, 3]})
    assert r.status_code == 422


@pytest.mark.parametrize("fmt", ["yolo", "label-studio"])
def test_yolo_and_label_studio_downloads(env, fmt: str) -> None:
    client, seeded, login = env
    client.put(
        f"/api/images/{seeded.image_ids[0]}/annotations",
        headers=login("annotator"),
        json={"version": 0, "annotations": [{"class_id": 3, "geometry": SQUARE}]},
    )
    r = client.get(f"/api/export/{fmt}", headers=login("lead"))
    assert r.status_code == 200, r.text
    assert r.content[:2] == b"PK"  # both zips: Label Studio's tasks with their config
    if fmt == "label-studio":
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            assert len(json.loads(z.read("default-label-studio.json"))) == 3


def test_assist_box_prompt_returns_a_polygon_in_image_pixels(env) -> None:
    client, seeded, login = env
    h = login("annotator")
    img = seeded.image_ids[0]
    # the synthetic photo's dark body spans x 106..533, y 160..320 of 640x480
    r = client.post(
        f"/api/images/{img}/assist", headers=h, json={"box": [96, 150, 544, 330], "tolerance": 2}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] and body["geometry"], body
    xs = [p[0] for poly in body["geometry"] for p in poly["exterior"]]
    ys = [p[1] for poly in body["geometry"] for p in poly["exterior"]]
    assert 80 <= min(xs) and max(xs) <= 560 and 140 <= min(ys) and max(ys) <= 340
    coarse = client.post(
        f"/api/images/{img}/assist", headers=h, json={"box": [96, 150, 544, 330], "tolerance": 10}
    ).json()
    n = lambda g: sum(len(p["exterior"]) for p in g)  # noqa: E731
    assert n(coarse["geometry"]) <= n(body["geometry"])


def test_lead_starts_retraining_round(env) -> None:
    from sqlmodel import select

    from db.models import Job
    from db.session import session_scope

    client, _, login = env
    r = client.post("/api/retrain", headers=login("lead"))
    assert r.status_code == 200, r.text
    with session_scope() as s:
        job = s.get(Job, r.json()["job_id"])
        assert job.kind == "round" and job.created_by == "lead1"
        assert len(s.exec(select(Job)).all()) == 1
    # the dashboard's choice of stages and preset travels to the round's parameters
    r = client.post(
        "/api/retrain",
        headers=login("lead"),
        json={
            "stages": ["yolo_seg", "assist_net"],
            "config": "small",
            "from_scratch": ["yolo_seg"],
        },
    )
    assert r.status_code == 200, r.text
    with session_scope() as s:
        params = s.get(Job, r.json()["job_id"]).params
        assert params["stages"] == ["yolo_seg", "assist_net"] and params["config"] == "small"
        assert params["from_scratch"] == ["yolo_seg"]
    bad = client.post("/api/retrain", headers=login("lead"), json={"stages": ["yolo9000"]})
    assert bad.status_code == 422 and "yolo9000" in bad.json()["detail"]
    assert "assist_net" in bad.json()["detail"]  # it lists what can be chosen


def test_admin_manages_users(env) -> None:
    client, _, login = env
    assert client.get("/api/users", headers=login("lead")).status_code == 403
    admin = login("admin")
    names = [u["username"] for u in client.get("/api/users", headers=admin).json()]
    assert "annotator1" in names and all("password" not in str(u) for u in names)
    r = client.post(
        "/api/users",
        headers=admin,
        json={"username": "newbie", "password": "long enough", "role": "reviewer"},
    )
    assert r.status_code == 201 and r.json()["role"] == "reviewer"
    dup = client.post(
        "/api/users", headers=admin, json={"username": "newbie", "password": "long enough"}
    )
    assert dup.status_code == 422 and "already exists" in dup.json()["detail"]
    short = client.post("/api/users", headers=admin, json={"username": "x", "password": "short"})
    assert short.status_code == 422
    assert (
        client.post("/api/login", json={"username": "newbie", "password": "long enough"}).json()[
            "role"
        ]
        == "reviewer"
    )


def test_upload_adds_photos_for_leads_only(env) -> None:
    client, _, login = env
    buf = io.BytesIO()
    PILImage.fromarray(__import__("numpy").full((16, 20, 3), 200, "uint8")).save(buf, format="PNG")
    files = [
        ("files", ("new.png", buf.getvalue(), "image/png")),
        ("files", ("broken.jpg", b"not really a jpeg", "image/jpeg")),
    ]
    refused = client.post("/api/images/upload", files=files, headers=login("annotator"))
    assert refused.status_code == 403
    before = client.get("/api/images", headers=login("lead")).json()["total"]
    r = client.post("/api/images/upload", files=files, headers=login("lead"))
    assert r.status_code == 201, r.text
    assert (r.json()["images_added"], r.json()["images_failed"]) == (1, 1)
    assert any("broken.jpg" in m for m in r.json()["messages"])
    assert client.get("/api/images", headers=login("lead")).json()["total"] == before + 1


def test_health_says_nothing_about_accounts(env) -> None:
    client, _, _ = env
    assert client.get("/api/health").json() == {"status": "ok"}


def test_repeated_bad_sign_ins_get_429_with_retry_after_then_the_window_ends(
    env, monkeypatch
) -> None:
    import time

    from services.accounts import throttle

    client, seeded, _ = env
    name = seeded.users["annotator"]
    answers = [
        client.post("/api/login", json={"username": name, "password": "wrong password"})
        for _ in range(6)
    ]
    assert [a.status_code for a in answers[:5]] == [401] * 5
    locked = answers[5]
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    right = client.post("/api/login", json={"username": name, "password": PASSWORD})
    assert right.status_code == 429, "the right password waits for the window too"
    monkeypatch.setattr(throttle, "_now", lambda: time.time() + 3600)
    ok = client.post("/api/login", json={"username": name, "password": PASSWORD})
    assert ok.status_code == 200


def test_admin_disables_a_user_and_a_new_password_signs_them_out(env) -> None:
    client, seeded, login = env
    admin = login("admin")
    ana = login("annotator")
    name = seeded.users["annotator"]
    assert client.get("/api/me", headers=ana).status_code == 200
    r = client.patch(f"/api/users/{name}", headers=admin, json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.get("/api/me", headers=ana).status_code == 401
    assert (
        client.post("/api/login", json={"username": name, "password": PASSWORD}).status_code == 401
    )
    assert (
        client.patch(f"/api/users/{name}", headers=admin, json={"active": True}).status_code == 200
    )
    ana = login("annotator")
    r = client.patch(f"/api/users/{name}", headers=admin, json={"password": "a new secret"})
    assert r.status_code == 200
    assert client.get("/api/me", headers=ana).status_code == 401
    assert (
        client.patch("/api/users/nobody", headers=admin, json={"active": False}).status_code == 404
    )
    assert (
        client.patch(f"/api/users/{name}", headers=admin, json={"password": "short"}).status_code
        == 422
    )
    assert (
        client.patch(
            f"/api/users/{name}", headers=login("lead"), json={"active": False}
        ).status_code
        == 403
    )


def test_huge_ids_anywhere_get_422_naming_the_field(env) -> None:
    """Every integer in a path or a query, at 2^70, is refused by name and never a 500."""
    client, _, login = env
    h = login("admin")
    tried = []
    for path, methods in client.get("/openapi.json").json()["paths"].items():
        for method, op in methods.items():
            params = op.get("parameters", [])
            ints = [p for p in params if "integer" in json.dumps(p.get("schema", {}))]
            for p in ints:
                url, query = path, {}
                for other in params:
                    if other["in"] == "path":
                        value = 2**70 if other is p else 1
                        url = url.replace("{" + other["name"] + "}", str(value))
                if p["in"] == "query":
                    query[p["name"]] = str(2**70)
                r = client.request(method, url, headers=h, params=query, json={})
                assert r.status_code == 422, (method, url, p["name"], r.status_code, r.text[:200])
                assert p["name"] in json.dumps(r.json()["detail"]), r.text[:300]
                tried.append((method, url))
    assert len(tried) >= 10, tried


def test_recent_classes_follow_the_user_from_token_to_token(env) -> None:
    from core.config import configure, env_name, get_settings

    client, _, login = env
    browser_a, browser_b = login("annotator"), login("annotator")  # two sign-ins, one user
    url = "/api/me/recent-classes"
    assert client.get(url, headers=browser_a).json() == {"class_ids": []}
    r = client.put(url, headers=browser_a, json={"class_ids": [3, 2, 3, 1]})
    assert r.status_code == 200 and r.json() == {"class_ids": [3, 2, 1]}  # repeats dropped
    assert client.get(url, headers=browser_b).json() == {"class_ids": [3, 2, 1]}
    assert client.get(url, headers=login("reviewer")).json() == {"class_ids": []}  # per user
    bad = client.put(url, headers=browser_b, json={"class_ids": [2, 9999]})
    assert bad.status_code == 422 and "class id 9999 is not in the project's taxonomy" in bad.text
    assert client.get(url, headers=browser_a).json() == {"class_ids": [3, 2, 1]}
    # Bounded by a setting.
    assert env_name("recent_classes_max") == "PANELBEATER_RECENT_CLASSES_MAX"
    configure(**{**get_settings().model_dump(), "recent_classes_max": 4})
    r = client.put(url, headers=browser_a, json={"class_ids": list(range(1, 12))})
    assert r.json() == {"class_ids": [1, 2, 3, 4]}
    assert client.get(url, headers=browser_b).json() == {"class_ids": [1, 2, 3, 4]}
