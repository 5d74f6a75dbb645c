"""Training, pre-annotation (resumable) and evaluation of stages through the database."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlmodel import select

from db.models import ImagePrediction, Prediction


def test_train_predict_resume_evaluate(db_session, labelled_project, monkeypatch, bar_off):
    import services.training.model_runs as runs
    from services.training.lifecycle import train_stage
    from services.training.model_runs import (
        evaluate_stage,
        predict_stage,
        resolve_version,
    )

    losses = []
    mv = train_stage(
        db_session,
        labelled_project,
        "albert",
        config="tiny",
        epochs=2,
        device="cpu",
        progress=lambda e, n, i: losses.append(i["loss"]),
    )
    assert mv.name == "albert-v1" and len(mv.sha256) == 64 and mv.metrics["train_images"] == 4
    assert mv.train_snapshot["count"] == 4 and len(losses) == 2
    mv2 = train_stage(db_session, labelled_project, "albert", config="tiny", epochs=1, device="cpu")
    assert mv2.name == "albert-v2"
    assert resolve_version(db_session, "albert", "v1").id == mv.id

    n1 = predict_stage(
        db_session, labelled_project, "albert", version="albert-v1", limit=2, device="cpu"
    )
    assert n1 == 2
    # photos go to the model in batches (the pipeline overlaps YOLO and ResNet in one)
    batches, real_load = [], runs.load_version

    def spying_load(*a, **k):
        model = real_load(*a, **k)
        real_predict = model.predict
        model.predict = lambda ims: batches.append(len(ims)) or real_predict(ims)
        return model

    monkeypatch.setattr(runs, "load_version", spying_load)
    monkeypatch.setattr(runs, "PREDICT_BATCH", 3)
    stops = iter([False, True])
    n_stopped = predict_stage(
        db_session,
        labelled_project,
        "albert",
        version=1,
        device="cpu",
        should_stop=lambda: next(stops),
    )
    assert n_stopped == 3 and batches == [3]  # stopped between batches, the first one kept
    n2 = predict_stage(db_session, labelled_project, "albert", version=1, device="cpu")
    assert n2 == 1 and batches == [3, 1]  # resumed: only the images not yet done
    assert predict_stage(db_session, labelled_project, "albert", version=1, device="cpu") == 0
    rows = db_session.exec(
        select(ImagePrediction).where(ImagePrediction.model_version_id == mv.id)
    ).all()
    assert len(rows) == 6 and all(len(r.embedding) == 2 * 64 for r in rows)  # fp16 x dim 64
    for p in db_session.exec(select(Prediction).where(Prediction.model_version_id == mv.id)).all():
        assert len(p.probs["damage"]) == 27 and abs(sum(p.probs["part"]) - 1) < 1e-3
        assert np.frombuffer(p.embedding, dtype=np.float16).shape == (64,)

    figures = evaluate_stage(db_session, labelled_project, "albert", device="cpu")
    assert figures["version"] == "albert-v2" and figures["images"] == 2
    assert 0 <= figures["part"]["accuracy"] <= 1 and "coco" in figures["part"]


def test_cli_train_and_evaluate_json(store, datasets_dir, labelled_project, db_session, bar_off):
    from typer.testing import CliRunner

    from cli.main import app

    db_session.commit()
    runner = CliRunner()
    r = runner.invoke(
        app, ["train", "albert", "--config", "tiny", "--epochs", "1", "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    assert "registered albert-v1" in r.output
    r = runner.invoke(app, ["evaluate", "albert", "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{") :])["version"] == "albert-v1"
    r = runner.invoke(app, ["predict", "albert", "--limit", "1", "--device", "cpu"])
    assert r.exit_code == 0 and "predicted 1 image(s)" in r.output
    r = runner.invoke(app, ["train", "nosuch"])
    assert r.exit_code == 1 and "unknown stage 'nosuch'" in r.output


def test_trained_assist_net_version_becomes_the_default_assistant(db_session, labelled_project):
    from core.config import get_settings
    from models.assist import make_assistant
    from services.training.lifecycle import train_stage

    assert make_assistant(get_settings()).backend == "grabcut"  # fresh project: no trained net yet
    mv = train_stage(
        db_session, labelled_project, "assist_net", config="tiny", epochs=1, device="cpu"
    )
    assert mv.name == "assist_net-v1" and mv.metrics["train_parts"] > 0
    a = make_assistant(get_settings())
    assert a.backend == "assist_net" and a.version == "assist_net-v1"


def test_embed_images_is_a_no_op_for_weight_free_back_ends(db_session, labelled_project):
    from db.models import Image
    from services.training.assist import embed_images

    ids = [im.id for im in db_session.exec(select(Image)).all()]
    out = embed_images(db_session, labelled_project, ids)
    assert out == {"backend": "grabcut", "embedded": 0, "cached": 0}


@pytest.mark.parametrize(
    "pairs,expected",
    [
        (["lr=0.01", "epochs=2"], {"lr": 0.01, "epochs": 2}),
        (["lr=1"], {"lr": 1.0}),
        (["backbone_weights=null"], {"backbone_weights": None}),
        (["backbone_weights=/w/resnet34.pth"], {"backbone_weights": "/w/resnet34.pth"}),
    ],
)
def test_set_options_are_typed_by_the_config(pairs, expected):
    from models.part_classifier import PartClassifierConfig

    assert PartClassifierConfig.parse_options(pairs) == expected


@pytest.mark.parametrize(
    "pair,needle",
    [
        ("epochs=1.5", "takes a value of type int"),
        ("batch_size=true", "takes a value of type int"),
        ("no_such=1", "has no such option; known: "),
        ("lr", "write it as key=value"),
    ],
)
def test_bad_set_options_are_refused_by_name(pair, needle):
    from models.base import StageError
    from models.part_classifier import PartClassifierConfig

    with pytest.raises(StageError, match=needle):
        PartClassifierConfig.parse_options([pair])


def test_cli_trains_from_a_weights_file_and_records_it(
    store, labelled_project, db_session, tmp_path
):
    import torch
    import torchvision
    from typer.testing import CliRunner

    from cli.main import app
    from core.files import sha256_file
    from db.models import ModelVersion

    db_session.commit()
    weights = tmp_path / "resnet34-imagenet.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), weights)
    runner = CliRunner()
    args = ["train", "part_classifier", "--device", "cpu", "--weights", str(weights)]
    r = runner.invoke(app, [*args, "--set", "epochs=1", "--set", "lr=0.0005"])
    assert r.exit_code == 0, r.output
    db_session.expire_all()
    mv = db_session.exec(select(ModelVersion)).one()
    assert mv.config["lr"] == 0.0005 and mv.config["epochs"] == 1
    assert mv.config["started_from"] == {"path": str(weights), "sha256": sha256_file(weights)}
    # by its name in the weights folder, and `weights list` then says which version used it
    r = runner.invoke(app, ["weights", "add", str(weights), "--name", "imagenet-r34"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args[:-1], "imagenet-r34", "--set", "epochs=1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["weights", "list"])
    assert "part_classifier-v2" in r.output, r.output
    r = runner.invoke(app, ["train", "part_classifier", "--set", "nope=1"])
    assert r.exit_code == 1 and "has no such option" in r.output
    r = runner.invoke(app, ["train", "assist_net", "--weights", str(weights)])
    assert r.exit_code == 1 and "cannot start from a weights file" in r.output
    r = runner.invoke(app, ["train", "part_classifier", "--weights", str(tmp_path / "gone.pth")])
    assert r.exit_code == 1 and "does not exist" in r.output


def _first_epoch_loss(db_session, project, stage, **kw) -> tuple[float, object]:
    from services.training.lifecycle import train_stage

    losses: list[float] = []

    def progress(step, total, info):
        if "loss" in info:
            losses.append(float(info["loss"]))

    mv = train_stage(db_session, project, stage, device="cpu", progress=progress, **kw)
    return losses[0], mv


@pytest.mark.parametrize("stage", ["assist_net", "part_classifier", "part_seg"])
def test_a_warm_start_continues_from_the_parent(db_session, labelled_project, stage):
    """Fine-tuning the promoted version starts where it ended: its first-epoch loss is below a
    scratch start's on the same data and seed, and the version says where it came from."""
    _, parent = _first_epoch_loss(db_session, labelled_project, stage, epochs=4)
    scratch, _ = _first_epoch_loss(db_session, labelled_project, stage, epochs=1)
    warm, child = _first_epoch_loss(db_session, labelled_project, stage, epochs=1, warm_from=parent)
    assert warm < scratch, (warm, scratch)
    assert child.parent_id == parent.id
    assert child.config["warm_from"] == {"version": parent.name, "sha256": parent.sha256}


def test_a_stage_that_cannot_continue_says_so(db_session, labelled_project):
    from models.base import StageError
    from models.pipeline import PipelineStage

    assert not PipelineStage.warm_startable
    with pytest.raises(StageError, match="cannot continue from an earlier version"):
        PipelineStage.__new__(PipelineStage).warm_start("x.pt")


def test_yolo_warm_start_takes_the_parents_weights(db_session, labelled_project):
    import torch

    from models.registry import build, config_class, stage_class
    from services.training.lifecycle import train_stage

    parent = train_stage(db_session, labelled_project, "yolo_seg", epochs=1, device="cpu")
    loaded = stage_class("yolo_seg").load(parent.path, device="cpu")
    fresh = build("yolo_seg", config_class("yolo_seg").from_preset("tiny", device="cpu"))
    before = dict(fresh.yolo.model.state_dict())
    fresh.warm_start(parent.path)
    after, want = fresh.yolo.model.state_dict(), loaded.yolo.model.state_dict()
    assert all(torch.equal(after[k], want[k]) for k in want)
    assert any(not torch.equal(before[k], want[k]) for k in want if k in before)
    child = train_stage(
        db_session, labelled_project, "yolo_seg", epochs=1, device="cpu", warm_from=parent
    )
    assert child.config["warm_from"]["version"] == parent.name
