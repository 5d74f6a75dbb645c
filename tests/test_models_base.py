"""Registry, configs, devices and checkpoint files of the model stages."""

from __future__ import annotations

import numpy as np
import pytest

from core.taxonomy import default_taxonomy
from models import registry
from models.base import (
    CheckpointError,
    StageConfig,
    StageError,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    taxonomy_counts,
)
from models.data import TrainingSet


def test_unknown_stage_lists_valid_names():
    with pytest.raises(StageError) as e:
        registry.build("albertt")
    for name in ("albert", "assist_net", "yolo_seg", "part_classifier", "mask_rcnn"):
        assert name in str(e.value)


def test_register_stage_adds_a_buildable_name():
    @registry.register_stage("unit_test_stage")
    class Dummy:
        config_class = StageConfig

        def __init__(self, config):
            self.config = config

    try:
        st = registry.build("unit_test_stage", "small")
        assert (
            isinstance(st, Dummy) and st.config.preset == "small" and st.name == "unit_test_stage"
        )
        assert "unit_test_stage" in registry.stage_names()
    finally:
        registry._REGISTRY.pop("unit_test_stage")


def test_presets_and_overrides():
    cfg = StageConfig.from_preset("tiny", epochs=5)
    assert cfg.epochs == 5 and cfg.preset == "tiny"
    with pytest.raises(StageError, match="unknown preset 'huge'"):
        StageConfig.from_preset("huge")
    with pytest.raises(StageError, match="unknown option"):
        StageConfig.from_preset("tiny", epoch=3)
    assert StageConfig.from_dict(cfg.to_dict() | {"junk": 1}) == cfg


def test_resolve_device_cpu_and_bad_name():
    dev, amp = resolve_device("cpu")
    assert dev.type == "cpu" and amp is False
    with pytest.raises(StageError):
        resolve_device("tpu")


def _save(path, counts=None):
    import torch

    return save_checkpoint(
        path,
        stage="albert",
        config=StageConfig(),
        class_counts=counts or {"damage": 26},
        state_dict={"w": torch.ones(2)},
    )


def test_checkpoint_round_trip_is_atomic(tmp_path):
    p = _save(tmp_path / "a" / "albert-v1.pt")
    assert p.is_file() and not list(p.parent.glob("*.tmp"))
    payload = load_checkpoint(p, stage="albert", class_counts={"damage": 26})
    assert float(payload["state_dict"]["w"].sum()) == 2.0


def test_checkpoint_missing_corrupt_wrong_counts_wrong_stage(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match=r"bad\.pt is corrupt"):
        load_checkpoint(bad)
    p = _save(tmp_path / "ok.pt")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(trunc)
    with pytest.raises(
        CheckpointError, match="other class counts.*damage: file has 26, taxonomy has 25"
    ):
        load_checkpoint(p, class_counts={"damage": 25})
    with pytest.raises(CheckpointError, match="holds stage 'albert', not 'yolo_seg'"):
        load_checkpoint(p, stage="yolo_seg")


def test_taxonomy_counts_and_training_set_loader(tmp_path):
    from PIL import Image

    from core.instances import Instances
    from core.records import ImageRecord

    assert taxonomy_counts(default_taxonomy()) == {"damage": 26, "fake": 7, "part": 61}
    arr = np.zeros((6, 8, 3), dtype=np.uint8)
    arr[..., 0] = 200
    Image.fromarray(arr).save(tmp_path / "x.png")
    ts = TrainingSet(
        [ImageRecord("x.png", 8, 6, Instances.empty(), meta={"path": str(tmp_path / "x.png")})],
        default_taxonomy(),
    )
    img = ts.load_image(0)
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8 and img[0, 0, 0] == 200
    ts.records[0].meta["path"] = str(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        ts.load_image(0)
