"""A registered version loads only from the file it was registered with."""

from __future__ import annotations

import os

import pytest


def test_a_model_file_changed_after_registration_is_refused_by_name(db_session, tmp_path):
    from services.errors import Invalid, NotFound
    from services.training.model_runs import load_version
    from services.training.registry import register_version

    artifact = tmp_path / "trained.pt"
    artifact.write_bytes(b"weights as trained")
    mv = register_version(db_session, stage="yolo_seg", artifact_path=artifact)
    with open(mv.path, "ab") as f:
        f.write(b" and a swapped tail")
    with pytest.raises(Invalid, match=r"yolo_seg-v1 .* has changed since it was registered"):
        load_version(mv, taxonomy=None)
    os.remove(mv.path)
    with pytest.raises(NotFound, match="model file of yolo_seg-v1 is missing"):
        load_version(mv, taxonomy=None)


class Payload:
    """Not a tensor, a number or a string: unpickling it could run code."""

    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_model_file_holding_code_is_refused_without_running_it(tmp_path, monkeypatch):
    import torch

    from models.base import CheckpointError, load_checkpoint

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "panelbeater-stage/1", "stage": "albert", "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path, stage="albert")
    assert not (tmp_path / "pwned.txt").exists()
