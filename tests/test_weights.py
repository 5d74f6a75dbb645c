"""The weights folder: checkpoints in each real layout, made here with random weights (nothing
can be downloaded), detected, stored, listed, refused when used, truncated, of another kind
or unsafe to unpickle.

The files are written once per session (``checkpoints``); the SAM ViT-B state dict (375 MB)
is the largest. ViT-L/H are built on the meta device: their real key layout and shapes,
without data.
"""

from __future__ import annotations

import fractions
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from typer.testing import CliRunner  # noqa: E402

from models.base import CheckpointError  # noqa: E402
from models.weights import inspect_weights  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "1")


def _save_sam(path: Path, model_type: str, meta: bool = False) -> None:
    from segment_anything import sam_model_registry

    if meta:
        with torch.device("meta"):
            model = sam_model_registry[model_type](checkpoint=None)
    else:
        model = sam_model_registry[model_type](checkpoint=None)
    torch.save(model.state_dict(), path)


def _save_mobile_sam(path: Path) -> None:
    from ultralytics.models.sam.build import build_mobile_sam

    torch.save(build_mobile_sam(checkpoint=None).state_dict(), path)


def _save_yolo(path: Path, yaml: str) -> None:
    from models.yolo_seg import offline_ultralytics

    offline_ultralytics()
    from ultralytics import YOLO

    YOLO(yaml).save(str(path))  # Ultralytics' own full-model .pt


def _save_resnet34(path: Path) -> None:
    from torchvision.models import resnet34

    torch.save(resnet34(weights=None).state_dict(), path)


def _save_mask_rcnn(path: Path) -> None:
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.save(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), path)


def _save_tv_vit(path: Path) -> None:
    from torchvision.models import vit_b_16

    torch.save(vit_b_16(weights=None).state_dict(), path)


def _save_timm_vit(path: Path) -> None:
    """timm's ViT-S/16 when timm is installed (it is not a dependency); else torchvision's
    ViT-B/16 renamed to timm's layout by the key map ALBERT's encoder loads with."""
    try:
        import timm
    except ImportError:
        from torchvision.models import vit_b_16

        from models.albert.encoder import _torchvision_to_timm

        sd = _torchvision_to_timm(vit_b_16(weights=None).state_dict())
        sd = {
            {"class_token": "cls_token"}.get(k, k.replace("heads.head.", "head.")): v
            for k, v in sd.items()
        }
        assert "cls_token" in sd and "blocks.0.attn.qkv.weight" in sd
        torch.save(sd, path)
        return
    torch.save(timm.create_model("vit_small_patch16_224", pretrained=False).state_dict(), path)


#: name -> (writer, expected kind, expected details subset)
CASES = {
    "sam_vit_b": (lambda p: _save_sam(p, "vit_b"), "sam", {"model_type": "vit_b", "depth": 12}),
    "sam_vit_l": (
        lambda p: _save_sam(p, "vit_l", meta=True),
        "sam",
        {"model_type": "vit_l", "embed_dim": 1024, "depth": 24},
    ),
    "sam_vit_h": (
        lambda p: _save_sam(p, "vit_h", meta=True),
        "sam",
        {"model_type": "vit_h", "embed_dim": 1280, "depth": 32},
    ),
    "mobile_sam": (_save_mobile_sam, "mobile_sam", {"encoder": "TinyViT"}),
    "yolo11n_seg": (
        lambda p: _save_yolo(p, "yolo11n-seg.yaml"),
        "yolo_seg",
        {"task": "segment", "class_count": 80},
    ),
    "resnet34": (_save_resnet34, "resnet34", {"class_count": 1000}),
    "mask_rcnn": (_save_mask_rcnn, "mask_rcnn", {"class_count": 91}),
    "vit_b_16": (
        _save_tv_vit,
        "vit",
        {"layout": "torchvision", "size": "base", "patch": 16, "depth": 12},
    ),
    "timm_vit": (_save_timm_vit, "vit", {"layout": "timm", "patch": 16, "depth": 12}),
}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name -> path of each checkpoint, written lazily once per session; deleted after."""
    root = tmp_path_factory.mktemp("weights-src")
    made: dict[str, Path] = {}
    timings: dict[str, float] = {}

    def get(name: str) -> Path:
        if name not in made:
            t0 = time.perf_counter()
            CASES[name][0](root / f"{name}.pt")
            timings[name] = time.perf_counter() - t0
            made[name] = root / f"{name}.pt"
        return made[name]

    yield get
    print("\ncheckpoint write seconds:", {k: round(v, 2) for k, v in timings.items()})
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", list(CASES))
def test_detects_kind_and_details(checkpoints, name):
    path = checkpoints(name)
    _, kind, expected = CASES[name]
    info = inspect_weights(path)
    assert info.kind == kind
    assert {k: info.details.get(k) for k in expected} == expected
    assert info.details["params"] > 0
    if kind == "yolo_seg":
        # a full-model pickle: read with the safe loader plus the module classes, and says so
        assert "weights-only loader" in info.note
    else:
        assert info.note == ""
    inspect_weights(path, expected_kind=kind)


def _cli(store: Path, *args: str):
    from cli.main import app

    return CliRunner().invoke(app, ["--data-dir", str(store), "weights", *args])


@pytest.mark.parametrize(
    "name",
    ["sam_vit_b", "mobile_sam", "yolo11n_seg", "resnet34", "mask_rcnn", "vit_b_16"],
)
def test_add_list_remove(store, checkpoints, name):
    from core.files import sha256_file

    src = checkpoints(name)
    kind = CASES[name][1]
    r = _cli(store, "add", str(src), "--kind", kind, "--name", f"my-{name}")
    assert r.exit_code == 0, r.output
    assert f"added my-{name}: {kind}" in r.output
    sha = sha256_file(src)
    stored = store / "weights" / f"{sha[:16]}-my-{name}.pt"
    assert stored.is_file() and stored.stat().st_size == src.stat().st_size
    record = json.loads((store / "weights" / f"my-{name}.json").read_text())
    assert record["sha256"] == sha and record["kind"] == kind

    again = _cli(store, "add", str(src))  # same bytes: the existing record, no second copy
    assert again.exit_code == 0 and f"already there as my-{name}" in again.output
    assert len(list((store / "weights").glob("*.pt"))) == 1

    listed = _cli(store, "list")
    assert listed.exit_code == 0 and f"my-{name}" in listed.output and kind in listed.output
    assert "used by: -" in listed.output
    rows = json.loads(_cli(store, "list", "--json").output)
    assert rows[0]["size"] == src.stat().st_size and rows[0]["used_by"] == []

    gone = _cli(store, "remove", f"my-{name}")
    assert gone.exit_code == 0, gone.output
    assert not stored.exists() and list((store / "weights").iterdir()) == []
    assert "no weights named" in _cli(store, "remove", f"my-{name}").output


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("resnet34", "sam"),
        ("sam_vit_b", "mobile_sam"),
        ("yolo11n_seg", "resnet34"),
        ("mask_rcnn", "resnet34"),
        ("vit_b_16", "yolo_seg"),
    ],
)
def test_wrong_kind_is_refused(store, checkpoints, name, wrong):
    src = checkpoints(name)
    kind = CASES[name][1]
    r = _cli(store, "add", str(src), "--kind", wrong)
    assert r.exit_code == 1
    msg = " ".join(r.output.split())
    assert str(src) in msg and f"(kind {kind}), not {wrong}" in msg
    assert f"--kind {kind}" in msg
    assert not list((store / "weights").glob("*.pt"))  # nothing stored


@pytest.mark.parametrize("name", ["resnet34", "yolo11n_seg", "mobile_sam", "mask_rcnn"])
@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_file_is_refused(store, checkpoints, tmp_path, name, keep):
    src = checkpoints(name)
    cut = tmp_path / f"cut-{name}.pt"
    data = src.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated") as e:
        inspect_weights(cut)
    assert str(cut) in str(e.value) and "download it again" in str(e.value)
    r = _cli(store, "add", str(cut), "--kind", CASES[name][1])
    assert r.exit_code == 1 and "truncated" in r.output and str(cut) in " ".join(r.output.split())
    assert not list((store / "weights").glob("*.pt"))


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_unsafe_pickle_is_refused_without_running(store, tmp_path, writer):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    payload = {"state_dict": {"w": torch.zeros(2)}, "x": _Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        with open(evil, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(CheckpointError) as e:
        inspect_weights(evil)
    msg = str(e.value)
    assert str(evil) in msg and "run code" in msg and "--trust" in msg
    assert "system" in msg and "was not loaded" in msg
    r = _cli(store, "add", str(evil))
    assert r.exit_code == 1 and "--trust" in r.output
    assert not marker.exists()


def test_trust_reads_a_harmless_foreign_pickle(store, checkpoints, tmp_path):
    """A class outside torch/Ultralytics is refused, and read only with --trust, with a note."""
    from torchvision.models import resnet34

    odd = tmp_path / "odd.pt"
    torch.save(
        {"state_dict": resnet34(weights=None).state_dict(), "lr": fractions.Fraction(1, 3)}, odd
    )
    r = _cli(store, "add", str(odd))
    assert r.exit_code == 1 and "fractions.Fraction" in r.output
    r = _cli(store, "add", str(odd), "--trust")
    assert r.exit_code == 0, r.output
    assert "added odd: resnet34" in r.output and "trust was given" in r.output


def test_yolo_of_another_task_is_refused(checkpoints, tmp_path):
    det = tmp_path / "yolo11n.pt"
    _save_yolo(det, "yolo11n.yaml")
    with pytest.raises(CheckpointError, match="YOLO detect model.*not a segmentation"):
        inspect_weights(det)


def test_unknown_state_dict_lists_the_kinds(tmp_path):
    p = tmp_path / "mlp.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), p)
    with pytest.raises(CheckpointError, match="does not recognise.*weight, bias.*ResNet34"):
        inspect_weights(p)
    with pytest.raises(CheckpointError, match="not a sam checkpoint"):
        inspect_weights(p, expected_kind="sam")


def test_remove_refused_while_a_setting_or_a_version_uses_it(store, checkpoints):
    from core.config import configure, get_settings
    from db.models import ModelVersion
    from db.session import session_scope

    assert _cli(store, "add", str(checkpoints("mobile_sam")), "--name", "msam").exit_code == 0
    assert _cli(store, "add", str(checkpoints("resnet34")), "--name", "r34").exit_code == 0
    from services.training.weights import get_weights

    msam, r34 = get_weights("msam"), get_weights("r34")

    configure(**{**get_settings().model_dump(), "mobile_sam_checkpoint": msam.path})
    r = _cli(store, "remove", "msam")
    assert r.exit_code == 1 and "setting mobile_sam_checkpoint" in r.output
    assert msam.path.is_file()

    with session_scope() as s:
        # one version names the file by path, the other by its sha256
        uses = [{"backbone_weights": str(r34.path)}, {"weights_sha256": r34.sha256}]
        for version, config in enumerate(uses, start=1):
            s.add(
                ModelVersion(
                    stage="part_classifier",
                    version=version,
                    name=f"part_classifier-v{version}",
                    path=f"v{version}.pt",
                    sha256=str(version) * 64,
                    config=config,
                )
            )
    r = _cli(store, "remove", "r34")
    assert r.exit_code == 1
    assert "version part_classifier-v1" in r.output and "part_classifier-v2" in r.output
    listed = _cli(store, "list").output
    assert "used by: setting mobile_sam_checkpoint" in listed
    assert "used by: version part_classifier-v1, version part_classifier-v2" in listed

    configure(**{**get_settings().model_dump(), "mobile_sam_checkpoint": None})
    assert _cli(store, "remove", "msam").exit_code == 0
    assert not msam.path.exists() and r34.path.is_file()


def test_names_are_checked(store, checkpoints):
    src = checkpoints("resnet34")
    r = _cli(store, "add", str(src), "--name", "../escape")
    assert r.exit_code == 1 and "is not allowed" in r.output
    assert _cli(store, "add", str(src), "--name", "a").exit_code == 0
    r = _cli(store, "add", str(src), "--name", "b")
    assert r.exit_code == 1 and "already in the weights folder as 'a'" in r.output
    r = _cli(store, "add", str(checkpoints("mobile_sam")), "--name", "a")
    assert r.exit_code == 1 and "a different file is already stored as 'a'" in r.output
    r = _cli(store, "add", str(store / "nope.pt"))
    assert r.exit_code == 1 and "does not exist" in r.output
