"""``POST /api/imports``: label files (and the photos they name) imported over HTTP as the CLI
imports them, on real car_parts_dsmlr photos: statuses, the ``status`` override, idempotent
re-imports that never move a photo back, predictions as pending pre-annotations of an
external model, roles, and 4xx answers that name the field and write nothing."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from browser_helpers import api_client
from conftest import write_coco_subset
from sqlmodel import func, select

from db.models import Annotation, Image, ModelVersion
from db.session import session_scope
from models.datasets import DSMLR_LABEL_MAP

LABEL_MAP = json.dumps({**DSMLR_LABEL_MAP, "_background_": "hood"})


@pytest.fixture
def env(tmp_path: Path):
    return api_client(tmp_path / "data", n_synthetic=1)


@pytest.fixture
def dsmlr(datasets_dir: Path, tmp_path: Path) -> dict:
    """Four dsmlr photos (their part polygons in the COCO file for the first three, none
    for the fourth) as a COCO file and the photos' bytes."""
    root = datasets_dir / "car_parts_dsmlr" / "trainingset"
    data = json.loads((root / "annotations.json").read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    keep = [im for im in data["images"] if im["id"] in annotated][:4]
    path = write_coco_subset(data, keep, tmp_path / "parts.json", labelled=keep[:3])
    return {
        "coco": path.read_bytes(),
        "data": data,
        "keep": keep,
        "photos": [(im["file_name"], (root / "JPEGImages" / im["file_name"]).read_bytes())
                   for im in keep],
    }  # fmt: skip


def post(client, headers, label: tuple[str, bytes], photos=(), **form):
    files = [("label_file", (label[0], label[1], "application/octet-stream"))]
    files += [("images", (n, b, "image/jpeg")) for n, b in photos]
    data = {k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()}
    return client.post("/api/imports", headers=headers, files=files, data=data)


def statuses(names) -> dict[str, str]:
    with session_scope() as s:
        rows = s.exec(select(Image.file_name, Image.status).where(Image.file_name.in_(names)))
        return {n: st.value for n, st in rows}


def stored_counts() -> tuple[int, int]:
    with session_scope() as s:
        return (
            s.exec(select(func.count()).select_from(Image)).one(),
            s.exec(select(func.count()).select_from(Annotation)).one(),
        )


def test_labels_statuses_override_and_idempotent_reimport(env, dsmlr) -> None:
    client, seeded, login = env
    lead = login("lead")
    names = [im["file_name"] for im in dsmlr["keep"]]
    label = ("parts.json", dsmlr["coco"])

    r = post(client, lead, label, dsmlr["photos"], format="coco", label_map=LABEL_MAP)
    assert r.status_code == 201, r.text
    rep = r.json()
    assert (rep["source"], rep["images_added"], rep["images_labelled"]) == ("parts.json", 4, 3)
    assert rep["statuses"] == {"labelled": 3, "new": 1} and rep["model_version"] is None
    assert rep["instances_added"] > 10
    got = statuses(names)
    assert [got[n] for n in names] == ["labelled", "labelled", "labelled", "new"]
    with session_scope() as s:  # kept in the media folder; the private folder is gone
        paths = [Path(p) for p in s.exec(select(Image.path).where(Image.file_name.in_(names)))]
        meta = s.exec(select(Image.meta).where(Image.file_name == names[0])).one()
    media = (seeded.data_dir / "media").resolve()
    assert all(p.parent == media and p.is_file() for p in paths)
    assert meta["source"] == "parts.json" and meta["status_by"] == "import:parts.json"
    assert not any((seeded.data_dir / "tmp").iterdir())
    shown = client.get("/api/images", headers=lead, params={"status": "labelled"}).json()
    assert sorted(i["file_name"] for i in shown["items"]) == sorted(names[:3])

    # a reviewer's approval stands; the same file again (photos already here, not re-sent)
    # adds nothing and moves nothing back
    first = next(i["id"] for i in shown["items"] if i["file_name"] == names[0])
    r = client.post(
        f"/api/images/{first}/status", headers=login("reviewer"), json={"status": "reviewed"}
    )
    assert r.status_code == 200, r.text
    before = stored_counts()
    r = post(client, lead, label, format="coco", label_map=LABEL_MAP)
    assert r.status_code == 201, r.text
    rep = r.json()
    assert (rep["images_added"], rep["images_skipped"], rep["instances_added"]) == (0, 4, 0)
    assert rep["statuses"] == {"reviewed": 1, "labelled": 2, "new": 1}
    assert stored_counts() == before

    # an override moves photos forward only: the new one to in_progress, none back
    r = post(client, lead, label, format="coco", status="in_progress", label_map=LABEL_MAP)
    assert r.status_code == 201, r.text
    got = statuses(names)
    assert [got[n] for n in names] == ["reviewed", "labelled", "labelled", "in_progress"]
    r = post(client, lead, label, dsmlr["photos"], format="coco", status="reviewed",
             label_map=LABEL_MAP)  # fmt: skip
    assert r.json()["statuses"] == {"reviewed": 4} and stored_counts() == before


def test_predictions_are_pending_under_an_external_version(env, dsmlr) -> None:
    client, _, login = env
    lead = login("lead")
    cats = {c["id"]: c["name"] for c in dsmlr["data"]["categories"]}
    stems = {im["id"]: Path(im["file_name"]).stem for im in dsmlr["keep"][:2]}
    results = [  # COCO results (Detectron2's segm.json): image_id is the photo's stem
        {"image_id": stems[a["image_id"]], "category_id": cats[a["category_id"]],
         "segmentation": a["segmentation"], "score": 0.8}
        for a in dsmlr["data"]["annotations"] if a["image_id"] in stems
    ]  # fmt: skip
    label = ("segm.json", json.dumps(results).encode())
    form = {"format": "coco", "as_predictions": True, "label_map": LABEL_MAP}

    r = post(client, lead, label, dsmlr["photos"][:2], model_name="detectron-x", **form)
    assert r.status_code == 201, r.text
    rep = r.json()
    assert rep["model_version"] == "detectron-x"
    assert (rep["images_added"], rep["instances_added"]) == (2, len(results))
    assert rep["messages"][0] == "photos: 2 added, 0 already here, 0 could not be read"
    with session_scope() as s:
        mv = s.exec(select(ModelVersion).where(ModelVersion.name == "detectron-x")).one()
        assert (mv.stage, mv.path, mv.config["file"]) == ("external", "", "segm.json")
        ids = list(s.exec(select(Image.id).where(Image.file_name == dsmlr["keep"][0]["file_name"])))
    detail = client.get(f"/api/images/{ids[0]}", headers=login("annotator")).json()
    assert detail["status"] == "new" and detail["annotations"] == []
    assert detail["predictions"] and {(p["state"], p["model"]) for p in detail["predictions"]} == {
        ("pending", "detectron-x")
    }
    again = post(client, lead, label, model_name="detectron-x", **form).json()
    assert (again["images_added"], again["images_skipped"], again["instances_added"]) == (0, 2, 0)


def test_yolo_zip_with_photos_and_a_zip_that_leads_out(env, dsmlr) -> None:
    client, seeded, login = env
    lead = login("lead")
    name, photo = dsmlr["photos"][0]
    stem = Path(name).stem
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ds/data.yaml", "path: .\ntrain: images/train\nnames: {0: front_bumper}\n")
        z.writestr(f"ds/labels/train/{stem}.txt", "0 0.1 0.1 0.5 0.1 0.5 0.4 0.1 0.4\n")
        z.writestr("ds/labels/train/nosuch.txt", "0 0.1 0.1 0.5 0.1 0.5 0.4\n")
    r = post(client, lead, ("ds.zip", buf.getvalue()), [(name, photo)], format="yolo")
    assert r.status_code == 201, r.text
    rep = r.json()
    assert (rep["images_added"], rep["instances_added"], rep["statuses"]) == (1, 1, {"labelled": 1})
    assert rep["messages"] == [
        "1 photo(s) the label file names were neither uploaded nor found in the project "
        "(labels/train/nosuch.txt); upload them with the label file to import their labels"
    ]

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escape.txt", "x")
    before = stored_counts()
    r = post(client, lead, ("evil.zip", evil.getvalue()), format="yolo")
    assert r.status_code == 422 and "leads outside the archive" in r.json()["detail"]
    assert not (seeded.data_dir / "escape.txt").exists() and stored_counts() == before


BAD_INPUT = [  # (form fields, label file or None for the good one, words the answer holds)
    ({"format": "coco"}, ("bad.json", b"{not json"), "label file 'bad.json' is not valid JSON"),
    ({"format": "pascal"}, None, "format 'pascal' is not one of"),
    ({}, None, "'format'"),  # the field is missing: FastAPI's own 422 names it
    ({"format": "coco", "as_predictions": True}, None, "model_name is required"),
    ({"format": "via", "as_predictions": True, "model_name": "m"}, None, "format 'via'"),
    ({"format": "coco", "status": "rejected"}, None, "status 'rejected' must be one of"),
    ({"format": "coco", "label_map": "[1]"}, None, "label_map must be a JSON object"),
    ({"format": "coco"}, None, "label(s) are not in the taxonomy"),  # no map given
]


def test_bad_input_is_refused_naming_the_field_and_writes_nothing(env, dsmlr) -> None:
    client, seeded, login = env
    lead = login("lead")
    before = stored_counts()
    media = sorted((seeded.data_dir / "media").glob("*"))
    for form, label, needle in BAD_INPUT:
        r = post(client, lead, label or ("parts.json", dsmlr["coco"]), dsmlr["photos"], **form)
        assert r.status_code == 422, (form, r.text)
        assert needle in str(r.json()["detail"]), (form, r.text)
        assert stored_counts() == before and sorted((seeded.data_dir / "media").glob("*")) == media
        assert not any((seeded.data_dir / "tmp").glob("*"))


def test_only_leads_and_admins_may_import(env, dsmlr) -> None:
    client, _, login = env
    label = ("parts.json", dsmlr["coco"])
    assert post(client, {}, label, format="coco").status_code == 401
    r = post(client, login("annotator"), label, format="coco", label_map=LABEL_MAP)
    assert r.status_code == 403 and "may not import" in r.json()["detail"]
    assert stored_counts()[0] == 1


def test_the_dashboard_handler_imports_through_the_same_service(env, dsmlr, tmp_path) -> None:
    from annotator.imports_panel import FROM_LABELS, run_import
    from db.models import User

    _, seeded, _ = env
    label = tmp_path / "parts.json"
    label.write_bytes(dsmlr["coco"])
    photos = []
    for name, data in dsmlr["photos"]:
        (tmp_path / name).write_bytes(data)
        photos.append(str(tmp_path / name))
    with session_scope() as s:
        lead = s.exec(select(User).where(User.username == seeded.users["lead"])).one()
    msg = run_import(lead, "coco", str(label), photos, FROM_LABELS, False, "", LABEL_MAP)
    assert msg.startswith("Added **4** photo(s)") and "Photos now: 3 labelled, 1 new." in msg
    refused = run_import(lead, "coco", str(label), None, FROM_LABELS, True, "", LABEL_MAP)
    assert refused.startswith("**Nothing was imported.** Fill in the model name")
    bad = run_import(lead, "via", str(label), None, FROM_LABELS, True, "m", LABEL_MAP)
    assert bad.startswith("**Nothing was imported.** format 'via' is not one of")
    assert run_import(lead, "coco", None, None, FROM_LABELS, False, "", "") == (
        "Choose a label file first."
    )


def test_cvat_xml_with_its_photo_over_http(env, dsmlr) -> None:
    """A CVAT for images 1.1 file: a polygon, a box and a tag of a dsmlr photo, as CVAT
    exports them; an unknown label is refused with its name and nothing is written."""
    client, _seeded, login = env
    lead = login("lead")
    name, photo = dsmlr["photos"][0]
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
  <image id="0" name="{name}" width="{dsmlr["keep"][0]["width"]}" height="{dsmlr["keep"][0]["height"]}">
    <polygon label="hood" occluded="0" source="manual" points="10,10;120,12;118,90;12,88" z_order="0"/>
    <box label="front_bumper" occluded="1" source="auto" xtl="20" ytl="100" xbr="200" ybr="160" z_order="1"/>
    <tag label="dent" source="manual"/>
  </image>
</annotations>""".encode()
    r = post(client, lead, ("annotations.xml", xml), [(name, photo)], format="cvat")
    assert r.status_code == 201, r.text
    assert (r.json()["images_added"], r.json()["instances_added"]) == (1, 2)
    with session_scope() as s:
        classes = sorted(s.exec(select(Annotation.class_id)).all())
    assert len(classes) == 2

    before = stored_counts()
    unknown = xml.replace(b'label="hood"', b'label="flux capacitor"')
    r = post(client, lead, ("annotations.xml", unknown), [(name, photo)], format="cvat")
    assert r.status_code == 422 and "flux capacitor" in r.json()["detail"]
    assert stored_counts() == before
