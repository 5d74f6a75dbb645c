"""Prediction rows <-> Instances: rows -> Instances -> rows loses nothing (probabilities,
embeddings, polygons with holes and several parts), and what a stage returns comes back
from the store as it went in."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import select

from core.geometry import Shape
from core.instances import ImageResult, Instances
from db.models import Image, ImagePrediction, ModelVersion, Prediction
from services.training.predictions import (
    encode_embedding,
    instances_to_rows,
    predictions_by_image,
    rows_to_instances,
    store_predictions,
    version_predictions,
)

SQUARE_WITH_HOLE = [
    {"exterior": [[1.0, 1.0], [7.0, 1.0], [7.0, 7.0], [1.0, 7.0]],
     "holes": [[[3.0, 3.0], [5.0, 3.0], [5.0, 5.0], [3.0, 5.0]]]}
]  # fmt: skip
TWO_PARTS = [
    {"exterior": [[0.0, 0.0], [2.5, 0.0], [2.5, 2.25], [0.0, 2.25]], "holes": []},
    {"exterior": [[4.0, 4.0], [8.0, 4.0], [8.0, 8.0], [4.0, 8.0]], "holes": []},
]
TRIANGLE = [{"exterior": [[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], "holes": []}]

FIELDS = ("image_id", "model_version_id", "class_id", "group", "geometry", "score", "probs")


def row(i: int, geometry, **kw) -> Prediction:
    base = dict(
        id=100 + i,
        image_id=7,
        model_version_id=3,
        class_id=40 + i,
        group="part",
        geometry=geometry,
        score=0.75,  # float32-exact, as every stored score is (Instances keep float32)
        probs={},
        extra={},
    )
    return Prediction(**{**base, **kw})


def emb(*v: float) -> bytes:
    return np.asarray(v, dtype=np.float16).tobytes()


CASES = {
    "holes, parts, two heads, embeddings": [
        row(0, SQUARE_WITH_HOLE, probs={"part": [0.9, 0.05, 0.05], "damaged": [0.25, 0.75]},
            embedding=emb(0.5, -1.0, 2.0), extra={"note": "x"}),
        row(1, TWO_PARTS, probs={"part": [0.125, 0.5, 0.375], "damaged": [0.6, 0.4]},
            embedding=emb(1.0, 0.0, 0.25), score=0.5),
    ],
    "a head and an embedding on one row only": [
        row(0, TRIANGLE, group="damage", probs={"damage": [0.123456, 0.876544]},
            embedding=emb(3.0, 4.0)),
        row(1, SQUARE_WITH_HOLE, probs={"part": [1.0, 0.0]}, extra={"note": None, "k": [1, 2]}),
    ],
    "no probabilities, no embeddings": [row(0, TRIANGLE), row(1, TWO_PARTS, class_id=3)],
    "one row": [row(0, TWO_PARTS, probs={"fake": [0.5] * 7})],
}  # fmt: skip


@pytest.mark.parametrize("rows", CASES.values(), ids=CASES.keys())
def test_rows_to_instances_to_rows_is_lossless(rows):
    inst = rows_to_instances(rows)
    assert len(inst) == len(rows)
    assert inst.data["prediction_id"] == [p.id for p in rows]
    back = instances_to_rows(inst, image_id=7, model_version_id=3)
    for a, b in zip(rows, back, strict=True):
        for f in FIELDS:
            assert getattr(b, f) == getattr(a, f), f
        assert b.embedding == a.embedding
        assert b.extra == {k: v for k, v in a.extra.items() if v is not None}


def test_instances_columns():
    rows = CASES["a head and an embedding on one row only"]
    inst = rows_to_instances(rows)
    assert inst.shapes[1].has_holes and len(rows_to_instances([rows[0]]).shapes[0].polygons) == 1
    assert inst.probs["damage"].shape == (2, 2) and np.isnan(inst.probs["damage"][1]).all()
    assert inst.probs["part"][1].tolist() == [1.0, 0.0] and np.isnan(inst.probs["part"][0]).all()
    assert inst.embeddings.shape == (2, 2) and inst.embeddings[0].tolist() == [3.0, 4.0]
    assert np.isnan(inst.embeddings[1]).all()
    assert inst.data["group"] == ["damage", "part"] and inst.data["k"] == [None, [1, 2]]
    np.testing.assert_array_equal(inst.boxes[0], [0, 0, 6, 6])
    assert rows_to_instances([]).probs == {} and len(rows_to_instances([])) == 0


def test_embeddings_of_different_lengths_explain():
    rows = [row(0, TRIANGLE, embedding=emb(1, 2)), row(1, TRIANGLE, embedding=emb(1, 2, 3))]
    with pytest.raises(ValueError, match="one model version's rows at a time"):
        rows_to_instances(rows)


def test_group_comes_from_the_taxonomy_when_not_given():
    from core.taxonomy import default_taxonomy

    tax = default_taxonomy()
    damage, part = tax.group("damage")[0], tax.group("part")[0]
    inst = Instances(shapes=[Shape.from_json(TRIANGLE)] * 3, class_ids=[damage.id, part.id, 10_000])
    rows = instances_to_rows(inst, image_id=1, model_version_id=2, taxonomy=tax)
    assert [r.group for r in rows] == ["damage", "part", "part"]


def test_stage_result_comes_back_from_the_store(db_session, project):
    img = Image(project_id=project.id, path="/x.jpg", file_name="x.jpg", sha256="0" * 64,
                width=16, height=12)  # fmt: skip
    mv = ModelVersion(stage="pipeline", version=1, name="pipeline-v1", path="/m", sha256="0")
    db_session.add_all([img, mv])
    db_session.flush()
    inst = Instances(
        shapes=[Shape.from_json(g) for g in (SQUARE_WITH_HOLE, TWO_PARTS)],
        class_ids=[40, 41],
        scores=[0.875, 0.25],
        probs={"damaged": [[0.25, 0.75], [0.5, 0.5]], "part": [[0.5, 0.5, 0.0], [0, 0, 1]]},
        embeddings=np.array([[0.5, 1.5], [-2.0, 0.0]]),
        data={"source": np.array(["a", "b"])},
    )
    store_predictions(db_session, img, mv, ImageResult(inst, np.array([1.0, 2.0, 3.0])), None)
    db_session.flush()
    got = version_predictions(db_session, mv.id)[img.id]
    assert [s.to_json() for s in got.shapes] == [s.to_json() for s in inst.shapes]
    np.testing.assert_array_equal(got.class_ids, inst.class_ids)
    np.testing.assert_array_equal(got.scores, inst.scores)
    for head in inst.probs:
        np.testing.assert_array_equal(got.probs[head], inst.probs[head])
    np.testing.assert_array_equal(got.embeddings, inst.embeddings)
    assert got.data["source"] == ["a", "b"] and got.data["model_version_id"] == [mv.id] * 2
    (image_row,) = db_session.exec(
        select(ImagePrediction).where(ImagePrediction.image_id == img.id)
    ).all()
    assert image_row.embedding == encode_embedding(np.array([1.0, 2.0, 3.0]))
    assert version_predictions(db_session, mv.id, image_ids={img.id + 1}) == {}


def test_predictions_by_image_keeps_row_order():
    rows = [
        row(0, TRIANGLE, image_id=2),
        row(1, TRIANGLE, image_id=1),
        row(2, TWO_PARTS, image_id=2),
    ]
    by = predictions_by_image(rows)
    assert list(by) == [2, 1] and by[2].data["prediction_id"] == [100, 102]


def test_label_studio_export_has_one_prediction_per_pending_version(db_session, project, tmp_path):
    import json

    from db.models import PredictionState
    from services.data_io.exports import export_label_studio
    from services.training.records import collect_records

    img = Image(project_id=project.id, path=str(tmp_path / "x.jpg"), file_name="x.jpg",
                sha256="1" * 64, width=16, height=12)  # fmt: skip
    a = ModelVersion(stage="albert", version=1, name="albert-v1", path="/a", sha256="0")
    y = ModelVersion(stage="yolo_seg", version=1, name="yolo_seg-v1", path="/y", sha256="0")
    db_session.add_all([img, a, y])
    db_session.flush()
    for mv, geometry, state in [
        (y, TWO_PARTS, PredictionState.pending),
        (a, SQUARE_WITH_HOLE, PredictionState.pending),
        (y, TRIANGLE, PredictionState.pending),
        (a, TRIANGLE, PredictionState.rejected),  # not pending: not exported
    ]:
        db_session.add(
            Prediction(image_id=img.id, model_version_id=mv.id, class_id=40, group="part",
                       geometry=geometry, score=0.5, state=state)
        )  # fmt: skip
    db_session.flush()
    (rec,) = collect_records(db_session, project, include_predictions=True)
    preds = rec.meta["predictions"]
    assert isinstance(preds, Instances) and preds.data["model_version"] == [
        "yolo_seg-v1",
        "albert-v1",
        "yolo_seg-v1",
    ]
    out = tmp_path / "ls.json"
    export_label_studio(db_session, project, out, include_predictions=True)
    (task,) = json.loads(out.read_text())
    regions = {
        p["model_version"]: [r["type"] for r in p["result"] if r["type"].endswith("labels")]
        for p in task["predictions"]
    }
    assert regions == {
        "yolo_seg-v1": ["brushlabels", "polygonlabels"],  # two parts -> brush; a triangle
        "albert-v1": ["brushlabels"],  # a hole -> brush
    }
