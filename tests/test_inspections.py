"""Vehicles, inspections and slots; the inspections import; new damage since pick-up;
flag verdicts; the REST API's roles."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import select

PHOTO = "coco_car_damage/train/17.jpg"
#: a walk-around homography: 8 degrees, 0.92 scale, a shift and mild perspective
H_TRUE = np.array([[0.911, -0.128, 60.0], [0.128, 0.911, 10.0], [2e-5, -3e-5, 1.0]])
DAMAGE = [[300.0, 200.0], [380.0, 190.0], [400.0, 260.0], [310.0, 270.0]]


@pytest.mark.parametrize(
    "name,slot",
    [
        ("front", "front"),
        ("Rear_Left", "rear_left"),
        ("closeup_2", "closeup_2"),
        ("front_3", "front_3"),
        ("odometer", "odometer"),
    ],
)
def test_parse_slot_accepts_the_walk_around(name: str, slot: str) -> None:
    from services.claims.inspections import parse_slot

    assert parse_slot(name) == slot


@pytest.mark.parametrize("name", ["bonnet", "closeup_0", "front_left_", "_2", "rear_x_1"])
def test_parse_slot_refuses_unknown_slots(name: str) -> None:
    from services.claims.inspections import parse_slot
    from services.errors import Invalid

    with pytest.raises(Invalid, match="not a known slot"):
        parse_slot(name)


@pytest.fixture
def store_session(any_store):
    """A session and the project on SQLite and, where a server is configured, PostgreSQL."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project

    with session_scope() as session:
        yield session, get_or_create_project(session)


def _save(img: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(img).save(path, quality=92)
    return path


def _photo(datasets_dir: Path) -> np.ndarray:
    from exports.image_files import load_image_rgb

    return load_image_rgb(datasets_dir / PHOTO)


def _warp(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpPerspective(img, H_TRUE, (w, h), borderMode=cv2.BORDER_REFLECT)


def _paint(img: np.ndarray, ring: list[list[float]]) -> np.ndarray:
    out = img.copy()
    cv2.fillPoly(out, [np.int32(ring)], (30, 30, 30))
    return out


def test_import_folder_and_manifest_reports_bad_rows_and_imports_the_rest(
    store_session, datasets_dir, tmp_path
) -> None:
    db_session, project = store_session
    from db.models import Image, Inspection, InspectionPhoto, Vehicle
    from services.claims.inspections import import_inspections, inspection_detail

    src = datasets_dir / "coco_car_damage" / "train"
    root = tmp_path / "walk"
    for rel, name in [
        ("AB123CD/pickup-1/front.jpg", "10.jpg"),
        ("AB123CD/pickup-1/closeup_2.jpg", "13.jpg"),
        ("AB123CD/return-1/front.jpg", "14.jpg"),
        ("AB123CD/return-1/bonnet.jpg", "19.jpg"),  # unknown slot
        ("1HGCM82633A004352/claim-7/rear_left.jpg", "20.jpg"),  # a VIN
        ("stray.jpg", "21.jpg"),  # not vehicle/inspection/slot
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((src / name).read_bytes())
    report = import_inspections(db_session, project, root, author="lead1")
    assert report.photos_placed == 4 and report.rows_failed == 2, report.messages
    assert any("bonnet" in m and "not a known slot" in m for m in report.messages)
    assert any(m.startswith("stray.jpg") for m in report.messages)
    vehicles = db_session.exec(select(Vehicle).order_by(Vehicle.id)).all()
    assert {(v.plate, v.vin) for v in vehicles} == {
        ("AB123CD", None),
        (None, "1HGCM82633A004352"),
    }
    kinds = {i.name: i.kind for i in db_session.exec(select(Inspection))}
    assert kinds == {"pickup-1": "pick_up", "return-1": "return", "claim-7": "claim"}
    pick = db_session.exec(select(Inspection).where(Inspection.name == "pickup-1")).one()
    grid = {s["slot"]: s for s in inspection_detail(db_session, project, pick.id)["slots"]}
    assert grid["front"]["image_id"] and grid["closeup_2"]["status"] == "new"
    assert grid["rear"]["image_id"] is None  # empty base slots are listed too

    # again: nothing new; the same photos stay in their slots
    again = import_inspections(db_session, project, root)
    assert again.photos_placed == 0 and again.photos_already_placed == 4

    # a manifest: a bad slot, an empty path, a path leading out, and a photo already
    # placed elsewhere are reported by line; the good row imports
    (root / "extra").mkdir()
    (root / "extra" / "a.jpg").write_bytes((src / "23.jpg").read_bytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "vehicle,inspection,slot,path,kind,date,claim_number\n"
        "ZZ999,ret-2,rear,extra/a.jpg,return,2026-11-03,CL-1\n"
        "ZZ999,ret-2,wing,extra/a.jpg,,,\n"
        "ZZ999,ret-2,left,,,,\n"
        "ZZ999,ret-2,right,../../etc/passwd.jpg,,,\n"
        "ZZ999,ret-2,roof,AB123CD/pickup-1/front.jpg,,,\n"
        "ZZ999,ret-2,interior,extra/a.jpg,,bad-date,\n"
    )
    report = import_inspections(db_session, project, root, manifest=manifest)
    assert report.photos_placed == 1 and report.rows_failed == 5, report.messages
    lines = " | ".join(report.messages)
    for line in (3, 4, 5, 6, 7):
        assert f"m.csv line {line}:" in lines, lines
    assert "already in slot front" in lines
    ret2 = db_session.exec(select(Inspection).where(Inspection.name == "ret-2")).one()
    assert ret2.claim_number == "CL-1" and str(ret2.inspected_on) == "2026-11-03"
    # rows left out bring no photo: 5 photos, each in one slot
    assert len(db_session.exec(select(Image)).all()) == 5
    assert len(db_session.exec(select(InspectionPhoto)).all()) == 5


def test_a_photo_holds_one_slot_and_a_slot_one_photo(db_session, project, tmp_path) -> None:
    from services.claims.inspections import assign_photo, create_inspection, create_vehicle
    from services.data_io.imports import import_folder
    from services.errors import Invalid

    for i in range(2):
        _save(np.full((64, 64, 3), 40 * i + 10, np.uint8), tmp_path / "p" / f"{i}.jpg")
    import_folder(db_session, project, tmp_path / "p")
    from db.models import Image

    a, b = (im.id for im in db_session.exec(select(Image).order_by(Image.id)))
    v = create_vehicle(db_session, project, plate="X1", notes="<b>dented</b> & scratched")
    with pytest.raises(Invalid, match="plate or a VIN"):
        create_vehicle(db_session, project, make="Fiat")
    with pytest.raises(Invalid, match="already belongs"):
        create_vehicle(db_session, project, plate="x1")
    i1 = create_inspection(db_session, project, vehicle_id=v.id, kind="pick_up")
    i2 = create_inspection(db_session, project, vehicle_id=v.id, kind="return", name="r")
    assign_photo(db_session, project, i1.id, a, "front")
    with pytest.raises(Invalid, match="at most one slot"):
        assign_photo(db_session, project, i2.id, a, "front")
    with pytest.raises(Invalid, match="already holds"):
        assign_photo(db_session, project, i1.id, b, "front")
    with pytest.raises(Invalid, match="kind"):
        create_inspection(db_session, project, vehicle_id=v.id, kind="rental")


def _flag_setup(db_session, project, tmp_path, pre: np.ndarray, post: np.ndarray):
    from db.models import Image
    from services.claims.inspections import assign_photo, create_inspection, create_vehicle
    from services.data_io.imports import import_folder

    _save(pre, tmp_path / "ph" / "pre.jpg")
    _save(post, tmp_path / "ph" / "post.jpg")
    import_folder(db_session, project, tmp_path / "ph")
    ids = {im.file_name: im.id for im in db_session.exec(select(Image))}
    v = create_vehicle(db_session, project, plate="NEW1")
    pick = create_inspection(
        db_session, project, vehicle_id=v.id, kind="pick_up", inspected_on="2026-11-01"
    )
    ret = create_inspection(
        db_session, project, vehicle_id=v.id, kind="return", inspected_on="2026-11-05"
    )
    assign_photo(db_session, project, pick.id, ids["pre.jpg"], "front")
    assign_photo(db_session, project, ret.id, ids["post.jpg"], "front")
    return ids, pick, ret


def _damage(db_session, project, image_id: int, ring) -> None:
    from db.models import Annotation
    from services.accounts.projects import project_taxonomy

    cid = project_taxonomy(project).group("damage")[0].id
    db_session.add(
        Annotation(
            image_id=image_id,
            class_id=cid,
            group="damage",
            geometry=[{"exterior": [list(map(float, p)) for p in ring], "holes": []}],
            author="annotator1",
        )
    )
    db_session.flush()


def test_new_damage_is_flagged_only_where_the_pick_up_had_none(
    store_session, datasets_dir, tmp_path
) -> None:
    db_session, project = store_session
    from core.alignment import corner_error, warp_points
    from db.models import Role, User
    from services.claims.new_damage import NEW, PRE_EXISTING, UNVERIFIED, compute_flags, decide_flag
    from services.errors import Forbidden

    pre = _photo(datasets_dir)
    h, w = pre.shape[:2]
    warped_ring = warp_points(H_TRUE, np.array(DAMAGE)).tolist()
    post = _paint(_warp(pre), warped_ring)  # the damage exists only on the return photo
    ids, pick, ret = _flag_setup(db_session, project, tmp_path, pre, post)
    _damage(db_session, project, ids["post.jpg"], warped_ring)

    out = compute_flags(db_session, project, ret.id, method="sift")
    assert out["counts"] == {NEW: 1, PRE_EXISTING: 0, UNVERIFIED: 0}
    assert out["compared_inspection_id"] == pick.id
    from db.models import DamageFlag

    flag = db_session.exec(select(DamageFlag)).one()
    found = np.array(flag.alignment["homography"])
    assert corner_error(found, H_TRUE, w, h) < 3.0
    assert flag.alignment["method"] == "sift" and flag.best_iou < 0.1

    # a verdict by a fraud analyst, kept across a recomputation; an annotator may not
    analyst = User(username="fa", password_hash="x", role=Role.fraud_analyst)
    annot = User(username="an", password_hash="x", role=Role.annotator)
    with pytest.raises(Forbidden, match="may not"):
        decide_flag(db_session, project, flag.id, decision="confirmed", note="x", user=annot)
    decide_flag(
        db_session, project, flag.id, decision="confirmed", note="<b>new</b> & fresh", user=analyst
    )

    # the same damage labelled at pick-up too: pre-existing, and the verdict stays
    _damage(db_session, project, ids["pre.jpg"], DAMAGE)
    out = compute_flags(db_session, project, ret.id, method="sift")
    assert out["counts"][PRE_EXISTING] == 1 and out["counts"][NEW] == 0
    flag = db_session.exec(select(DamageFlag)).one()
    assert flag.state == PRE_EXISTING and flag.best_iou > 0.5
    assert (flag.decision, flag.note, flag.decided_by) == ("confirmed", "<b>new</b> & fresh", "fa")


def test_unaligned_damage_is_unverified_never_new(
    db_session, project, datasets_dir, tmp_path
) -> None:
    from services.claims.new_damage import NEW, UNVERIFIED, compute_flags

    pre = _photo(datasets_dir)
    blank = np.full_like(pre, 128)  # nothing to match: no homography holds
    ids, _, ret = _flag_setup(db_session, project, tmp_path, pre, _paint(blank, DAMAGE))
    _damage(db_session, project, ids["post.jpg"], DAMAGE)
    out = compute_flags(db_session, project, ret.id, method="auto")
    assert out["counts"][UNVERIFIED] == 1 and out["counts"][NEW] == 0
    from db.models import DamageFlag

    flag = db_session.exec(select(DamageFlag)).one()
    assert flag.alignment["homography"] is None and "no method aligned" in flag.alignment["reason"]


def test_api_roles_for_vehicles_inspections_and_flags(tmp_path) -> None:
    from browser_helpers import api_client

    client, seeded, login = api_client(tmp_path / "data", n_synthetic=2)
    lead, annot, analyst = login("lead"), login("annotator"), login("fraud_analyst")
    assert client.get("/api/vehicles").status_code == 401
    body = {"plate": "PB-1", "make": "Fiat", "vehicle_model": "Panda", "notes": "<i>x</i>"}
    assert client.post("/api/vehicles", json=body, headers=annot).status_code == 403
    v = client.post("/api/vehicles", json=body, headers=lead)
    assert v.status_code == 201, v.text
    vid = v.json()["id"]
    assert client.post("/api/vehicles", json={"make": "Fiat"}, headers=lead).status_code == 422
    assert [x["plate"] for x in client.get("/api/vehicles", headers=annot).json()] == ["PB-1"]
    r = client.post(
        "/api/inspections",
        json={
            "vehicle_id": vid,
            "kind": "return",
            "inspected_on": "2026-11-05",
            "claim_number": "C9",
        },
        headers=lead,
    )
    assert r.status_code == 201, r.text
    iid = r.json()["id"]
    img = seeded.image_ids[0]
    assert (
        client.put(f"/api/inspections/{iid}/slots/front", json={"image_id": img}, headers=annot)
    ).status_code == 403
    put = client.put(f"/api/inspections/{iid}/slots/front", json={"image_id": img}, headers=lead)
    assert put.status_code == 200, put.text
    bad = client.put(f"/api/inspections/{iid}/slots/bonnet", json={"image_id": img}, headers=lead)
    assert bad.status_code == 422 and "not a known slot" in bad.json()["detail"]
    detail = client.get(f"/api/inspections/{iid}", headers=analyst).json()
    assert detail["vehicle"]["plate"] == "PB-1" and detail["inspection"]["claim_number"] == "C9"
    assert {s["slot"]: s["image_id"] for s in detail["slots"]}["front"] == img
    # the queue filtered to the inspection holds its one photo
    q = client.get(f"/api/inspections/{iid}/images", headers=annot).json()
    assert q == [img]
    step = client.get(f"/api/queue/next?inspection_id={iid}&lease=false", headers=annot).json()
    assert step["image"]["id"] == img and step["queue_length"] == 1
    assert client.get(f"/api/inspections/{iid}/report.pdf").status_code == 401
    pdf = client.get(f"/api/inspections/{iid}/report.pdf", headers=annot)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    patched = client.patch(f"/api/vehicles/{vid}", json={"make": "Lancia"}, headers=lead)
    assert patched.json()["make"] == "Lancia"
    assert client.delete(f"/api/vehicles/{vid}", headers=lead).status_code == 422
    assert client.delete(f"/api/inspections/{iid}", headers=annot).status_code == 403
    assert client.delete(f"/api/inspections/{iid}", headers=lead).status_code == 204
    assert client.get(f"/api/inspections/{iid}", headers=lead).status_code == 404
    assert (
        client.post(
            "/api/damage-flags/999/decision", json={"decision": "confirmed"}, headers=annot
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/api/damage-flags/999/decision", json={"decision": "confirmed"}, headers=analyst
        ).status_code
        == 404
    )


def _jpeg(value: int, side: int = 96) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(value)
    img = np.clip(rng.normal(value, 30, (side, side, 3)), 0, 255).astype(np.uint8)
    PILImage.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_upload_into_slot_numbers_several_photos_and_reports_bad_ones(db_session, project) -> None:
    from services.claims.inspections import (
        create_inspection,
        create_vehicle,
        inspection_detail,
        upload_into_slot,
    )
    from services.errors import Invalid

    v = create_vehicle(db_session, project, plate="UP-1")
    ins = create_inspection(db_session, project, vehicle_id=v.id, kind="claim", claim_number="C1")
    one = upload_into_slot(db_session, project, ins.id, "front", [("f.jpg", _jpeg(60))])
    assert [(n, s) for n, s, _ in one.placed] == [("f.jpg", "front")] and not one.messages
    files = [
        ("a.jpg", _jpeg(80)),
        ("broken.jpg", b"\xff\xd8 not really a jpeg"),
        ("notes.txt", b"hello"),
        ("b.jpg", _jpeg(100)),
        ("c.jpg", _jpeg(120)),
    ]
    out = upload_into_slot(db_session, project, ins.id, "closeup", files)
    assert [(n, s) for n, s, _ in out.placed] == [
        ("a.jpg", "closeup"),
        ("b.jpg", "closeup_2"),
        ("c.jpg", "closeup_3"),
    ], out.messages
    assert any("broken.jpg" in m for m in out.messages)
    assert any("notes.txt" in m for m in out.messages)
    # a taken slot is reported by file name; the next file goes on into a free closeup_n
    again = upload_into_slot(
        db_session, project, ins.id, "front", [("g.jpg", _jpeg(140)), ("h.jpg", _jpeg(160))]
    )
    assert any(m.startswith("g.jpg: slot front") and "already holds" in m for m in again.messages)
    assert [(n, s) for n, s, _ in again.placed] == [("h.jpg", "front_2")]
    # the same photo once more is already there, not an error
    same = upload_into_slot(db_session, project, ins.id, "rear", [("a2.jpg", _jpeg(80))])
    assert same.already_there == [("a2.jpg", "closeup", out.placed[0][2])] and not same.placed
    slots = {
        s["slot"]: s["file_name"] for s in inspection_detail(db_session, project, ins.id)["slots"]
    }
    assert slots["closeup_3"] == "c.jpg" and slots["front"] == "f.jpg" and slots["rear"] is None
    with pytest.raises(Invalid, match="'bonnet' is not a known slot"):
        upload_into_slot(db_session, project, ins.id, "bonnet", [("x.jpg", _jpeg(5))])


def test_inspections_tab_forms_create_and_upload_with_lead_rights(store, tmp_path) -> None:
    """The Gradio handlers: a lead adds a vehicle, an inspection and photos into a slot; a bad
    slot is reported; an annotator is refused by the same permission check as the dashboard."""
    import gradio as gr

    from annotator import inspections_panel as panel
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import can, create_user
    from services.claims.inspections import inspection_detail

    with session_scope() as session:
        get_or_create_project(session)
        users = {
            r: create_user(session, username=r, password="password-123", role=r)
            for r in ("lead", "annotator")
        }
        for u in users.values():
            session.expunge(u)

    def require(token: str, permission: str):
        user = users[token]
        if not can(user, permission):
            raise gr.Error(f"Your role ({user.role.value}) may not use the dashboard.")
        return user

    msg, picker = panel._new_vehicle(require, "lead", "", "", "Fiat", "Panda", "")
    assert msg.startswith("**Error:**") and "plate or a VIN" in msg
    msg, picker = panel._new_vehicle(require, "lead", "PB-9", "", "Fiat", "Panda", "<b>n</b>")
    assert msg.startswith("Vehicle ") and picker["value"]
    msg, pick = panel._new_inspection(
        require, "lead", picker["value"], "return", "2026-11-30", "C7"
    )
    assert "added" in msg and pick["value"] in [c[1] for c in pick["choices"]]
    iid = pick["value"]
    photos = []
    for k, value in enumerate((70, 90)):
        photos.append(tmp_path / f"side{k}.jpg")
        photos[-1].write_bytes(_jpeg(value))
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    out = panel._upload(
        require, "lead", iid, "left", [*map(str, photos), str(tmp_path / "bad.jpg")]
    )
    assert "side0.jpg -&gt; left" in out and "side1.jpg -&gt; left_2" in out and "bad.jpg" in out
    bad = panel._upload(require, "lead", iid, "wing", [str(photos[0])])
    assert bad.startswith("**Error:**") and "not a known slot" in bad
    with pytest.raises(gr.Error):
        panel._upload(require, "annotator", iid, "rear", [str(photos[0])])
    with pytest.raises(gr.Error):
        panel._new_vehicle(require, "annotator", "PB-10", "", "", "", "")
    with session_scope() as session:
        d = inspection_detail(session, get_or_create_project(session), iid)
    held = {s["slot"]: s["file_name"] for s in d["slots"] if s["image_id"]}
    assert held == {"left": "side0.jpg", "left_2": "side1.jpg"}
    assert d["inspection"].claim_number == "C7" and d["vehicle"].vehicle_model == "Panda"


def test_patch_ssl_training_registers_a_model_version(
    db_session, project, datasets_dir, tmp_path
) -> None:
    """``train-aligner`` registers each encoder as a ``patch_ssl`` ModelVersion (metrics,
    sha256); the aligner loads the promoted one, else the newest; rounds never train it."""
    from db.models import ModelVersion
    from services.claims.alignment import (
        STAGE,
        latest_patch_ssl,
        patch_ssl_version,
        train_patch_ssl,
    )
    from services.data_io.imports import import_folder
    from services.training import registry
    from services.training.lifecycle import round_stages

    assert latest_patch_ssl(db_session) is None
    for name in ("17.jpg", "18.jpg"):
        src = datasets_dir / "coco_car_damage" / "train" / name
        (tmp_path / "cars").mkdir(exist_ok=True)
        (tmp_path / "cars" / name).write_bytes(src.read_bytes())
    import_folder(db_session, project, tmp_path / "cars")
    first = train_patch_ssl(db_session, project, steps=1)
    second = train_patch_ssl(db_session, project, steps=2)
    rows = db_session.exec(select(ModelVersion).where(ModelVersion.stage == STAGE)).all()
    assert [r.name for r in rows] == ["patch_ssl-v1", "patch_ssl-v2"]
    v1, v2 = rows
    assert v2.metrics["steps"] == 2 and v2.metrics["photos"] == 2 and v2.metrics["preset"] == "cpu"
    assert v2.metrics["final_loss"] == second["last_loss"] and np.isfinite(v2.metrics["final_loss"])
    assert Path(v1.path).is_file() and v1.sha256 == first["sha256"] and not v1.promoted
    assert patch_ssl_version(db_session).id == v2.id
    assert len(latest_patch_ssl(db_session).losses) == 2
    registry.promote(db_session, v1.id)
    assert patch_ssl_version(db_session).id == v1.id
    assert len(latest_patch_ssl(db_session).losses) == 1
    assert STAGE not in round_stages(db_session, None)
    Path(v1.path).write_bytes(b"swapped")  # a changed file is never loaded under its name
    with pytest.raises(Exception, match="has changed since it was registered"):
        latest_patch_ssl(db_session)


def test_photos_uploaded_into_a_slot_are_pre_annotated_by_the_promoted_stages(
    db_session, project, tmp_path, bar_off
) -> None:
    """Committing an upload into a slot queues one preannotate job per promoted
    pre-annotating stage, over those photos only; run by a worker, it stores the promoted
    version's predictions of them. A rolled-back upload, and a stage with no promoted
    version, queue nothing."""
    from db.models import ImagePrediction, Job, JobStatus, Prediction
    from jobs.runner import execute_job
    from jobs.slot_predictions import CREATED_BY
    from models.registry import build
    from services.claims.inspections import create_inspection, create_vehicle, upload_into_slot
    from services.data_io.imports import import_uploads
    from services.training.registry import register_version

    def jobs() -> list[Job]:
        db_session.expire_all()
        return list(db_session.exec(select(Job).where(Job.kind == "preannotate")))

    import_uploads(db_session, project, [("loose.jpg", _jpeg(30))])  # in no slot
    v = create_vehicle(db_session, project, plate="PB-55")
    ret = create_inspection(db_session, project, vehicle_id=v.id, kind="return")
    db_session.commit()
    upload_into_slot(db_session, project, ret.id, "front", [("a.jpg", _jpeg(60))])
    db_session.commit()
    assert jobs() == []  # nothing promoted yet: nothing to pre-annotate with

    stage = build("yolo_seg", {"preset": "tiny", "device": "cpu", "conf": 0.0, "max_det": 3})
    mv = register_version(
        db_session,
        stage="yolo_seg",
        artifact_path=stage.save(tmp_path / "yolo.pt"),
        config=stage.config.to_dict(),
        promote=True,
    )
    register_version(  # trained, never promoted: it pre-annotates nothing
        db_session, stage="part_seg", artifact_path=stage.save(tmp_path / "other.pt")
    )
    db_session.commit()
    upload_into_slot(db_session, project, ret.id, "rear", [("b.jpg", _jpeg(90))])
    db_session.rollback()
    assert jobs() == []

    out = upload_into_slot(
        db_session, project, ret.id, "closeup", [("c.jpg", _jpeg(120)), ("d.jpg", _jpeg(150))]
    )
    placed = sorted(image_id for _, _, image_id in out.placed)
    assert len(placed) == 2
    db_session.commit()
    [job] = jobs()
    assert job.params == {"stage": "yolo_seg", "version": mv.name, "image_ids": placed}
    assert job.created_by == CREATED_BY and job.project_id == project.id

    execute_job(job.id)
    db_session.expire_all()
    assert db_session.get(Job, job.id).status == JobStatus.completed
    assert db_session.get(Job, job.id).result["predicted"] == 2
    done = db_session.exec(
        select(ImagePrediction.image_id).where(ImagePrediction.model_version_id == mv.id)
    ).all()
    assert sorted(done) == placed  # the loose photo and the earlier slot photo are left alone
    preds = db_session.exec(select(Prediction).where(Prediction.model_version_id == mv.id)).all()
    assert preds and {p.image_id for p in preds} <= set(placed)
