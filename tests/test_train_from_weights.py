"""Training each stage from weights a user brings.

Checkpoints are made here in each real layout with random weights (nothing is downloaded):
Ultralytics' own ``.pt`` of an 80-class COCO-shaped YOLO, a 91-class torchvision Mask R-CNN
state dict, torchvision ViTs. For each: one tiny training step from it, the version records
the file's sha256, a class-count mismatch is handled (YOLO and Mask R-CNN re-make their
class heads; a ViT of another size is refused naming both sizes), and a wrong kind or a
truncated file gets a sentence naming the file. Then the same choices in rounds and the API.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import annotated_subset, requires_datasets
from sqlmodel import select

os.environ.setdefault("YOLO_OFFLINE", "1")

pytestmark = [requires_datasets, pytest.mark.timeout(300)]

#: ALBERT's tiny encoder (models/albert/config.py) as torchvision's VisionTransformer takes it
ALBERT_TINY_VIT = dict(
    image_size=128, patch_size=16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=256
)


@pytest.fixture
def damage_project(db_session, project, datasets_dir, tmp_path):
    """Four coco_car_damage photos with their damage polygons, labelled (Mask R-CNN learns
    damage; the dsmlr photos have only parts)."""
    from db.models import Image
    from services.data_io.imports import import_coco
    from services.labelling.statuses import set_status

    root = datasets_dir / "coco_car_damage" / "train"
    path = annotated_subset(root / "COCO_train_annos.json", 4, tmp_path / "damage.json")
    report = import_coco(db_session, project, path, images_dir=root)
    assert report.images_added == 4
    for im in db_session.exec(select(Image)).all():
        set_status(db_session, image_id=im.id, status="labelled", author="t")
    db_session.flush()
    return project


# -- checkpoints in their real layouts, random weights --------------------------------------


def _yolo_coco(path: Path) -> Path:
    from models.yolo_seg import offline_ultralytics

    offline_ultralytics()
    from ultralytics import YOLO

    YOLO("yolo11n-seg.yaml").save(str(path))  # Ultralytics' own .pt, 80 COCO classes
    return path


def _mask_rcnn_coco(path: Path) -> Path:
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    net = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)  # 91 COCO classes
    torch.save(net.state_dict(), path)
    return path


def _vit(path: Path, **size) -> Path:
    import torch
    from torchvision.models import VisionTransformer

    torch.save(VisionTransformer(**size).state_dict(), path)
    return path


def _resnet34(path: Path) -> Path:
    import torch
    import torchvision

    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    return path


def _truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    return {
        "yolo_seg": _yolo_coco(d / "yolo11n-seg-coco.pt"),
        "mask_rcnn": _mask_rcnn_coco(d / "maskrcnn-coco.pth"),
        "albert": _vit(d / "vit-tiny.pth", **ALBERT_TINY_VIT),
        "part_classifier": _resnet34(d / "resnet34.pth"),
    }


def _train_from(session, project, stage: str, weights: Path, **options):
    """One tiny epoch of ``stage`` on the CPU from ``weights``; the version records the file."""
    from core.files import sha256_file
    from services.training.lifecycle import train_stage

    mv = train_stage(
        session, project, stage, config="tiny", epochs=1, device="cpu", weights=weights, **options
    )
    assert mv.config["started_from"] == {"path": str(weights), "sha256": sha256_file(weights)}
    return mv


# -- one tiny step from each kind --------------------------------------------------------


def test_yolo_fine_tunes_from_an_80_class_coco_pt(db_session, labelled_project, files):
    """Ultralytics transfers what fits and re-makes the 80-class head for our part classes."""
    from services.accounts.projects import project_taxonomy
    from services.training.model_runs import load_version

    mv = _train_from(db_session, labelled_project, "yolo_seg", files["yolo_seg"])
    assert mv.config["model"] == str(files["yolo_seg"])
    taxonomy = project_taxonomy(labelled_project)
    stage = load_version(mv, taxonomy, device="cpu")
    assert len(stage.yolo.model.names) == len(taxonomy.group("part"))  # no longer 80


def test_mask_rcnn_starts_from_coco_weights_with_new_heads(db_session, damage_project, files):
    import torch

    from models.mask_rcnn import MaskRCNNConfig, MaskRCNNStage

    sd = torch.load(files["mask_rcnn"], weights_only=True)
    st = MaskRCNNStage(MaskRCNNConfig.from_preset("tiny", weights=str(files["mask_rcnn"])))
    own = st.net.state_dict()
    for key in ("backbone.body.layer1.0.conv1.weight", "rpn.head.conv.0.0.weight"):
        torch.testing.assert_close(own[key], sd[key])  # what fits is COCO's
    assert own["roi_heads.box_predictor.cls_score.weight"].shape[0] < 91  # heads re-made
    assert "91 classes there" in st.start_note and "cls_score" in st.start_note
    assert "mask_fcn_logits" in st.start_note and "did not fit" not in st.start_note

    mv = _train_from(db_session, damage_project, "mask_rcnn", files["mask_rcnn"])
    assert "re-made" in mv.metrics["start_weights"]


def test_albert_encoder_starts_from_a_torchvision_vit(db_session, labelled_project, files):
    import torch

    from models.albert.config import AlbertConfig
    from models.albert.stage import AlbertStage

    sd = torch.load(files["albert"], weights_only=True)
    st = AlbertStage(AlbertConfig.from_preset("tiny", vit_weights=str(files["albert"])))
    enc = st.model.encoder
    torch.testing.assert_close(
        enc.blocks[1].attn.qkv.weight,
        sd["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"],
    )
    torch.testing.assert_close(enc.pos_embed[0], sd["encoder.pos_embedding"][0, 1:])

    _train_from(db_session, labelled_project, "albert", files["albert"])


def test_a_vit_of_another_size_is_refused_naming_both_sizes(db_session, labelled_project, tmp_path):
    from models.base import CheckpointError
    from services.training.lifecycle import train_stage

    wide = _vit(tmp_path / "vit-wide.pth", **{**ALBERT_TINY_VIT, "hidden_dim": 96})
    with pytest.raises(CheckpointError) as e:
        train_stage(db_session, labelled_project, "albert", device="cpu", weights=wide)
    msg = str(e.value)
    assert str(wide) in msg and "dim 96" in msg and "dim 64" in msg and "set dim=96" in msg
    deep = _vit(tmp_path / "vit-deep.pth", **{**ALBERT_TINY_VIT, "num_layers": 3})
    with pytest.raises(CheckpointError, match=r"depth 3.*depth 2.*depth differ"):
        train_stage(db_session, labelled_project, "albert", device="cpu", weights=deep)
    # options that make ALBERT's encoder the file's size load it
    _train_from(db_session, labelled_project, "albert", deep, options={"depth": 3})


# -- a wrong kind and a truncated file: a sentence naming the file, before any training ------


@pytest.mark.parametrize(
    ("stage", "other"),
    [
        ("yolo_seg", "part_classifier"),
        ("mask_rcnn", "part_classifier"),  # a ResNet34 given to Mask R-CNN
        ("albert", "mask_rcnn"),
        ("part_classifier", "albert"),
    ],
)
def test_a_wrong_kind_or_a_truncated_file_is_refused(
    db_session, labelled_project, files, tmp_path, stage, other
):
    from services.errors import Invalid
    from services.training.lifecycle import train_stage

    wrong = files[other]
    with pytest.raises(Invalid) as e:
        train_stage(db_session, labelled_project, stage, device="cpu", weights=wrong)
    assert str(wrong) in str(e.value) and f"{stage} starts from a" in str(e.value)
    cut = _truncated(files[stage], tmp_path / f"cut-{files[stage].name}")
    with pytest.raises(Invalid) as e:
        train_stage(db_session, labelled_project, stage, device="cpu", weights=cut)
    assert str(cut) in str(e.value) and "download it again" in str(e.value)
    assert "Traceback" not in str(e.value)


def test_a_stage_given_another_kind_in_its_config_says_so(files):
    """``--set weights=...`` skips the service's check; the stage's own loader still refuses
    a file that is not a Mask R-CNN, with a sentence naming it."""
    from models.base import CheckpointError
    from models.mask_rcnn import MaskRCNNConfig, MaskRCNNStage

    cfg = MaskRCNNConfig.from_preset("tiny", weights=str(files["part_classifier"]))
    with pytest.raises(CheckpointError) as e:
        MaskRCNNStage(cfg)
    assert str(files["part_classifier"]) in str(e.value)
    assert "ResNet34" in str(e.value) and "Mask R-CNN starts from it" in str(e.value)


# -- the same choices in rounds and the API -------------------------------------------------


def test_a_round_passes_each_stage_its_weights_and_options(
    db_session, labelled_project, files, monkeypatch
):
    import logging

    from jobs import rounds
    from services.training import lifecycle

    db_session.commit()
    seen: dict[str, dict] = {}

    class Stop(Exception):
        pass

    def fake_run(session, project, plan, **kw):
        seen[plan.stage] = plan
        raise Stop

    class Ctx:
        log = logging.getLogger("test")

        def report(self, **kw):
            pass

        def project(self, session):
            return session.get(type(labelled_project), labelled_project.id)

        def progress_callback(self, *a, **kw):
            return None

    monkeypatch.setattr(lifecycle, "run_plan", fake_run)
    with pytest.raises(Stop):
        rounds.run_round(
            Ctx(),
            stages=["yolo_seg"],
            weights={"yolo_seg": str(files["yolo_seg"])},
            options={"yolo_seg": ["imgsz=160", "lr0=0.005"]},
        )
    plan = seen["yolo_seg"]
    assert plan.started_from["path"] == str(Path(files["yolo_seg"]).resolve())
    assert plan.warm_from is None and (plan.cfg.imgsz, plan.cfg.lr0) == (160, 0.005)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"options": {"yolo_seg": ["nope=1"]}}, "params.options.yolo_seg: --set nope"),
        ({"options": {"yolo9000": ["imgsz=1"]}}, "unknown stage 'yolo9000'"),
        ({"options": {"yolo_seg": "imgsz=1"}}, "must be a list"),
        ({"weights": {"assist_net": "x.pt"}}, "cannot start from a weights file"),
        ({"weights": {"yolo_seg": ""}}, "params.weights.yolo_seg"),
    ],
)
def test_round_params_are_checked_when_the_round_is_asked_for(params, message):
    from jobs.service import validate_params
    from services.errors import Invalid

    with pytest.raises(Invalid, match=message):
        validate_params("round", params)


def test_retrain_api_takes_weights_and_options(tmp_path):
    from browser_helpers import api_client

    from db.models import Job
    from db.session import session_scope

    client, _, login = api_client(tmp_path / "data", n_synthetic=1)
    h = login("lead")
    bad = client.post(
        "/api/retrain",
        headers=h,
        json={"stages": ["yolo_seg"], "options": {"yolo_seg": ["nope=1"]}},
    )
    assert bad.status_code == 422, bad.text
    assert "nope" in bad.json()["detail"] and "imgsz" in bad.json()["detail"]  # lists known keys
    body = {
        "stages": ["yolo_seg", "mask_rcnn"],
        "weights": {"mask_rcnn": "coco-maskrcnn"},
        "options": {"yolo_seg": ["imgsz=160"], "mask_rcnn": ["min_size=160"]},
    }
    r = client.post("/api/retrain", headers=h, json=body)
    assert r.status_code == 200, r.text
    with session_scope() as s:
        params = s.get(Job, r.json()["job_id"]).params
    assert params["weights"] == {"mask_rcnn": "coco-maskrcnn"}
    assert params["options"] == {"yolo_seg": ["imgsz=160"], "mask_rcnn": ["min_size=160"]}
