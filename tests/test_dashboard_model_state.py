"""Honest model state, portable exports, the fraud screen, the dashboard's plots and what
the jobs table says."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import seed_workspace
from PIL import Image as PILImage

SQUARE = [
    {"exterior": [[100.0, 100.0], [220.0, 100.0], [220.0, 200.0], [100.0, 200.0]], "holes": []}
]


@pytest.fixture
def seeded(tmp_path: Path):
    from core.config import reset_settings
    from db.session import reset_engine

    seeded = seed_workspace(tmp_path / "data", n_synthetic=4, n_predictions=0)
    yield seeded
    reset_engine()
    reset_settings()


def _save(image_id: int, annotations: list[dict], author: str = "ana") -> None:
    from db.session import session_scope
    from services.labelling.saves import save_annotations

    with session_scope() as s:
        save_annotations(
            s, image_id=image_id, expected_version=0, annotations=annotations, author=author
        )


def _label(image_id: int, author: str = "ana") -> None:
    from db.session import session_scope
    from services.labelling.statuses import set_status

    with session_scope() as s:
        set_status(s, image_id=image_id, status="labelled", author=author)


# ---------- §6 exports ----------


def test_yolo_zip_trains_wherever_it_is_unzipped_and_ui_exports_filter(
    seeded, tmp_path, monkeypatch
) -> None:
    """The zip's data.yaml names no server folder: Ultralytics finds the split folders beside
    it after the zip is unzipped elsewhere and the working directory is another one; the
    dashboard's export takes the CLI's status, split and group filters."""
    import yaml
    from ultralytics.data.utils import check_det_dataset

    from annotator.exports_panel import export_file
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import get_user, issue_token
    from services.data_io.exports import export_archive

    ids = seeded.image_ids
    _save(ids[0], [{"class_id": 3, "geometry": SQUARE}])  # a damage polygon
    _save(ids[1], [{"class_id": 40, "geometry": SQUARE}])
    _label(ids[0])
    server_tmp = tmp_path / "server"
    server_tmp.mkdir()
    with session_scope() as s:
        out = export_archive(s, get_or_create_project(s), "yolo", server_tmp, group="damage")
    elsewhere = tmp_path / "somewhere" / "else"
    with zipfile.ZipFile(out.path) as z:
        z.extractall(elsewhere)
    text = (elsewhere / "data.yaml").read_text()
    assert str(server_tmp) not in text and "path" not in yaml.safe_load(text)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # not the dataset's folder
    data = check_det_dataset(str(elsewhere / "data.yaml"))
    assert Path(data["train"]).resolve().is_relative_to(elsewhere.resolve())
    labels = sorted((elsewhere / "labels").rglob("*.txt"))
    assert sum(bool(p.read_text().strip()) for p in labels) == 1  # damage group: one photo

    with session_scope() as s:
        lead = get_user(s, seeded.users["lead"])
        token = issue_token(s, lead)
    import json

    everything = json.loads(Path(export_file(token, "coco")).read_text())
    labelled = json.loads(Path(export_file(token, "coco", ["labelled"], "", "")).read_text())
    parts = json.loads(Path(export_file(token, "coco", [], "", "part")).read_text())
    assert len(everything["images"]) == 4 and len(everything["annotations"]) == 2
    assert [im["id"] for im in labelled["images"]] == [1] and len(labelled["annotations"]) == 1
    assert len(parts["annotations"]) == 1 and parts["annotations"][0]["category_id"] != 3


# ---------- §5 honest model state ----------


def test_a_promoted_model_with_no_predictions_says_why(seeded) -> None:
    from db.models import ImagePrediction, ModelVersion
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.dashboard.summary import model_state

    with session_scope() as s:
        mv = ModelVersion(
            stage="yolo_seg",
            version=2,
            name="yolo_seg-v2",
            path="-",
            sha256="0",
            promoted=True,
            config={"conf": 0.25, "epochs": 3},
            metrics={"holdout": {"part": {"coco": {"AP50": 0.0}}}},
        )
        s.add(mv)
        s.flush()
        for image_id in seeded.image_ids:
            s.add(ImagePrediction(image_id=image_id, model_version_id=mv.id))
        s.flush()
        state = model_state(s, get_or_create_project(s))
    assert state == [
        "yolo_seg-v2: 0 detections above 0.25 on 4 photos; its held-out AP50 is 0.00; label "
        "more or train longer, or lower the threshold for a photo on the dashboard"
    ]


def test_grabcut_says_when_its_answer_is_only_the_box() -> None:
    from models.assist.grabcut import GrabCutAssistant

    flat = np.full((120, 160, 3), 128, np.uint8)  # nothing to separate: GrabCut gives up
    assistant = GrabCutAssistant()
    assistant.set_image(flat)
    box = np.array([40.0, 30.0, 100.0, 90.0])
    result = assistant.predict(box=box)
    np.testing.assert_allclose(result.shape.bbox, box, atol=1.0)  # the box itself
    assert result.note and "returned your box unchanged (score" in result.note
    assert result.to_json()["note"] == result.note
    # a real object inside the box: a real answer, no note
    img = flat.copy()
    yy, xx = np.mgrid[:120, :160]
    img[(yy - 60) ** 2 + (xx - 70) ** 2 < 27**2] = (200, 30, 30)
    assistant.set_image(img)
    found = assistant.predict(box=box)
    assert found.note is None and "note" not in found.to_json()


# ---------- §6 the fraud queue without a model ----------


def test_fraud_screen_queues_severe_damage_and_an_odd_colour_patch_with_reasons(seeded) -> None:
    from browser_helpers import seeded_api_client

    from db.models import Image
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.claims.fraud_screen import screen_images

    ids = seeded.image_ids
    # photo 1: severe damage; photo 2: a magenta patch painted over the body, a damage
    # polygon around it; photo 3: an ordinary damage polygon on the body's own paint
    with session_scope() as s:
        path = Path(s.get(Image, ids[1]).path)
    pixels = np.array(PILImage.open(path).convert("RGB"))
    pixels[180:260, 250:370] = (235, 20, 200)
    PILImage.fromarray(pixels).save(path, quality=95)
    patch = [{"exterior": [[250, 180], [370, 180], [370, 260], [250, 260]], "holes": []}]
    ordinary = [{"exterior": [[150, 200], [230, 200], [230, 260], [150, 260]], "holes": []}]
    _save(ids[0], [{"class_id": 3, "geometry": SQUARE, "attributes": {"severity": "severe"}}])
    _save(ids[1], [{"class_id": 3, "geometry": patch, "attributes": {"severity": "minor"}}])
    _save(ids[2], [{"class_id": 3, "geometry": ordinary}])
    with session_scope() as s:
        out = screen_images(s, get_or_create_project(s))
    assert out == {"screened": 3, "queued": 1}
    from services.labelling.images import queue_ids

    with session_scope() as s:
        pid = get_or_create_project(s).id
        assert queue_ids(s, pid, status="in_progress", flagged=False) == [ids[2]]

    client, login = seeded_api_client(seeded)
    auth = login("fraud_analyst")
    query = "flagged=true&status=new,in_progress,labelled,reviewed,rejected"
    seen, after = {}, ""
    while True:
        step = client.get(f"/api/queue/next?{query}{after}", headers=auth).json()
        if step["image"] is None or step["image"]["id"] in seen:
            break
        seen[step["image"]["id"]] = step["check_reasons"]
        after = f"&after_id={step['image']['id']}"
    assert set(seen) == {ids[0], ids[1]}
    assert seen[ids[0]] == ["scrape (annotation 1) has severe severity"]
    assert (
        len(seen[ids[1]]) == 1
        and "colour differs from the paint around it by ΔE" in seen[ids[1]][0]
    )
    # The polygons those reasons are about, for the canvas to mark, each with its reason.
    check = client.get(f"/api/images/{ids[1]}/fraud-check", headers=auth).json()
    assert check["reasons"] == seen[ids[1]]
    [suspect] = check["suspects"]
    assert suspect["reason"] == seen[ids[1]][0]
    assert f"(annotation {suspect['annotation_id']})" in suspect["reason"]
    check = client.get(f"/api/images/{ids[0]}/fraud-check", headers=auth).json()
    assert check["suspects"] == [{"annotation_id": 1, "reason": "scrape has severe severity"}]
    assert client.get(f"/api/images/{ids[2]}/fraud-check", headers=auth).json()["suspects"] == []
    denied = client.get(f"/api/images/{ids[0]}/fraud-check", headers=login("annotator"))
    assert denied.status_code == 403


# ---------- §7 plots, §8 throughput and jobs ----------


def test_plots_numbers_pictures_and_csv(seeded) -> None:
    from browser_helpers import model_version

    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.dashboard import plots

    ids = seeded.image_ids
    _save(ids[0], [{"class_id": 3, "geometry": SQUARE}, {"class_id": 40, "geometry": SQUARE}])
    _label(ids[0])
    _label(ids[1])
    with session_scope() as s:
        for v, ap, n, promoted in ((1, 0.2, 10, False), (2, 0.35, 20, True), (3, 0.3, 30, False)):
            holdout = {"holdout": {"part": {"coco": {"AP50": ap}}}}
            s.add(
                model_version(
                    "yolo_seg", v, holdout, promoted=promoted, train_snapshot={"count": n}
                )
            )
        s.flush()
        tables = plots.plot_tables(s, get_or_create_project(s))
    pace = tables["pace"]
    assert [r[1:] for r in pace["rows"]] == [[2, 0, 2]] and pace["open"] == 2
    assert pace["pace_per_day"] == 2 and pace["days_to_finish"] == 1
    assert {(r[0], r[2]) for r in tables["classes"]["rows"]} == {("damage", 1), ("part", 1)}
    yolo = [r for r in tables["versions"]["rows"] if r[0] == "yolo_seg"]
    assert [r[4] for r in yolo] == [0.2, 0.35, 0.3] and [r[5] for r in yolo] == ["", "yes", ""]
    assert ["albert", "albert-v1", 1, "", "", ""] in tables["versions"]["rows"]  # unmeasured
    assert [(r[2], r[4]) for r in tables["learning_curve"]["rows"]] == [
        (10, 0.2),
        (20, 0.35),
        (30, 0.3),
    ]
    for name, table in tables.items():
        assert plots.render(name, table)[:8] == b"\x89PNG\r\n\x1a\n"
    csv = plots.to_csv(tables["versions"]).splitlines()
    assert csv[0] == "stage,version,number,metric,value,promoted"
    assert csv[3] == "yolo_seg,yolo_seg-v2,2,holdout.part.coco.AP50,0.35,yes"


def _jpeg(seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    rgb = np.random.default_rng(seed).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(buf, "JPEG")
    return buf.getvalue()


def test_labelled_per_day_adds_up_to_the_headers_labelled_count(seeded) -> None:
    """Photos imported already labelled have no labeller: the plot counts them (a column of
    their own, on their import day), so its cumulative total is the header's labelled count,
    while the team's pace and the projection leave them out. /api/stats says the same."""
    from browser_helpers import seeded_api_client

    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.dashboard import plots
    from services.dashboard.stats import project_stats
    from services.data_io.imports import import_uploads

    with session_scope() as s:
        project = get_or_create_project(s)
        files = [(f"done_{k}.jpg", _jpeg(k)) for k in range(3)]
        assert import_uploads(s, project, files, status="labelled").images_labelled == 3
    with session_scope() as s:
        pace = plots.labelling_pace(s, get_or_create_project(s))
        stats = project_stats(s, get_or_create_project(s))
    assert stats["labelled"] == 3 and stats["per_status"]["labelled"] == 3
    assert [r[1:] for r in pace["rows"]] == [[0, 3, 3]]
    assert pace["pace_per_day"] == 0 and pace["days_to_finish"] is None
    assert plots.pace_png(pace)[:8] == b"\x89PNG\r\n\x1a\n"

    _label(seeded.image_ids[0])
    with session_scope() as s:
        pace = plots.labelling_pace(s, get_or_create_project(s))
    assert [r[1:] for r in pace["rows"]] == [[1, 3, 4]]
    assert pace["pace_per_day"] == 1 and pace["days_to_finish"] == pace["open"] == 3

    client, login = seeded_api_client(seeded)
    body = client.get("/api/stats", headers=login("lead")).json()
    assert body["stats"]["labelled"] == pace["rows"][-1][3] == 4


def test_throughput_leaves_import_sources_out(seeded) -> None:
    from db.models import Annotation, AnnotationRevision, AnnotationSource
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.review.throughput import annotator_throughput

    _save(seeded.image_ids[0], [{"class_id": 3, "geometry": SQUARE}], author="ana")
    with session_scope() as s:
        image_id = seeded.image_ids[1]
        s.add(
            Annotation(
                image_id=image_id,
                class_id=3,
                group="damage",
                geometry=SQUARE,
                source=AnnotationSource.imported,
                author="import:claims.json",
            )
        )
        s.add(
            AnnotationRevision(
                image_id=image_id, revision=0, annotations=[], author="import:claims.json"
            )
        )
        s.flush()
        rows = annotator_throughput(s, get_or_create_project(s).id)
    assert [(r["author"], r["photos"], r["instances"]) for r in rows] == [("ana", 1, 1)]


def test_the_jobs_table_says_what_a_round_did() -> None:
    from services.dashboard.summary import job_summary

    steps = [
        {"step": "snapshot", "what": "snapshot of the labelled set"},
        {"step": "train", "what": "training yolo_seg"},
        {"step": "evaluate", "what": "evaluating yolo_seg-v2 on the held-out split"},
        {
            "step": "promote",
            "what": "yolo_seg: holdout.part.coco.AP50: yolo_seg-v2 0.1 vs yolo_seg-v1 0.2; not promoted (kept yolo_seg-v1)",
        },
        {"step": "pre-annotate", "what": "pre-annotating with yolo_seg-v1"},
        {"step": "pre-annotate", "what": "yolo_seg-v1 pre-annotated 0 new photos"},
        {"step": "select", "what": "selecting the next 50 photos (hybrid)"},
        {"step": "select", "what": "hybrid fell back to kcenter: hybrid: no uncertainty yet"},
    ]
    line = job_summary({"message": "done", "error": None, "result": {"steps": steps}})
    assert line == (
        "yolo_seg: holdout.part.coco.AP50: yolo_seg-v2 0.1 vs yolo_seg-v1 0.2; not promoted "
        "(kept yolo_seg-v1) · yolo_seg-v1 pre-annotated 0 new photos · hybrid fell back to "
        "kcenter: hybrid: no uncertainty yet"
    )
    failed = {"message": "x", "error": "Traceback...\nInvalid: no labelled images", "result": {}}
    assert job_summary(failed) == "failed: no labelled images"


@pytest.mark.parametrize(
    "error, sentence",
    [
        # a domain error: its message is the sentence, without the class name
        (
            "Invalid: no labelled images; import labels first",
            "no labelled images; import labels first",
        ),
        ("NotFound: photo 4 is missing", "photo 4 is missing"),
        # anything else keeps its class name, which says what broke
        ("ZeroDivisionError: division by zero", "ZeroDivisionError: division by zero"),
        # a traceback: its last line
        ('Traceback (most recent call last):\n  File "x.py", line 1\nInvalid: bad k', "bad k"),
        # a sentence over several lines: the first one
        ("Invalid: the stage failed\ndetails: shape (3, 4)", "the stage failed"),
        ("  \n ", "no error message was recorded; see the job's log"),
    ],
)
def test_a_failed_job_is_one_sentence_in_the_table(error, sentence) -> None:
    from services.dashboard.summary import failure_sentence

    assert failure_sentence(error) == sentence


def test_a_long_failure_is_cut_with_an_ellipsis() -> None:
    from services.dashboard.summary import JOB_SENTENCE_CHARS, failure_sentence

    said = failure_sentence("Invalid: " + "the held-out photos are too few " * 20)
    assert len(said) == JOB_SENTENCE_CHARS and said.endswith("…")
    assert said.startswith("the held-out photos are too few")


def test_plot_csv_png_model_state_and_threshold_routes(tmp_path) -> None:
    from browser_helpers import api_client

    from core.config import reset_settings
    from db.session import reset_engine

    client, seeded, login = api_client(tmp_path / "data", n_synthetic=2)
    try:
        lead, annotator = login("lead"), login("annotator")
        r = client.get("/api/plots/classes.csv", headers=lead)
        assert r.status_code == 200 and r.text.splitlines()[0] == "group,class,instances"
        png = client.get("/api/plots/pace.png", headers=lead)
        assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
        assert client.get("/api/plots/classes.csv", headers=annotator).status_code == 403
        assert client.get("/api/plots/nope.csv", headers=lead).status_code == 422
        assert client.get("/api/models/state", headers=lead).json() == {"empty_results": []}
        url = f"/api/models/yolo_seg/predict/{seeded.image_ids[0]}"
        bad = client.post(url + "?threshold=1.5", headers=lead)
        assert bad.status_code == 422 and "between 0 and 1" in bad.text
        none = client.post(url + "?threshold=0.1", headers=lead)
        assert none.status_code == 404 and "no promoted version" in none.text
        assert client.post(url + "?threshold=0.1", headers=annotator).status_code == 403
    finally:
        reset_engine()
        reset_settings()
