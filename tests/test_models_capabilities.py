"""What stages declare about themselves (the registry's queries), the shared evaluation, and
torch's thread count: a process setting applied at start-up, never by building a stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import noise_training_set

from core.config import Settings
from core.taxonomy import GROUPS
from models import registry
from models.base import StageBase, StageConfig, StageError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; its stdout, stripped."""
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


# -- capabilities ----------------------------------------------------------------------


def test_prompted_and_pre_annotating_stages_come_from_the_stage_classes():
    assert registry.prompted_stages() == ["assist_net"]
    pre = registry.pre_annotating_stages()
    assert "assist_net" not in pre
    assert {"albert", "yolo_seg", "part_classifier", "pipeline", "mask_rcnn"} <= set(pre)
    assert registry.stage_class("assist_net").prompted
    assert not registry.stage_class("assist_net").pre_annotates
    info = registry.stage_info("pipeline")
    assert info.built_from == ("yolo_seg", "part_classifier") and info.pre_annotates
    assert info.config_class is registry.config_class("pipeline")


def test_every_builtin_stage_declares_a_title_config_load_and_evaluate():
    infos = registry.stage_infos()
    assert [i.name for i in infos][:5] == [
        "yolo_seg",
        "part_classifier",
        "albert",
        "mask_rcnn",
        "assist_net",
    ]
    for info in infos:
        cls = registry.stage_class(info.name)
        assert cls.name == info.name and info.title != info.name, info.name
        assert issubclass(info.config_class, StageConfig)
        for method in ("predict", "train", "evaluate", "save", "load"):
            assert callable(getattr(cls, method, None)), (info.name, method)
        assert set(info.built_from) <= set(registry.stage_names())


def test_a_stage_registered_without_the_base_gets_the_defaults():
    @registry.register_stage("unit_test_plain")
    class Plain:
        config_class = StageConfig

    try:
        info = registry.stage_info("unit_test_plain")
        assert (info.prompted, info.pre_annotates, info.built_from) == (False, True, ())
        assert info.title == "unit_test_plain"
        assert "unit_test_plain" in registry.pre_annotating_stages()
    finally:
        registry._REGISTRY.pop("unit_test_plain")
    with pytest.raises(StageError, match="valid names: .*assist_net"):
        registry.stage_info("assist")


def test_asking_what_stages_can_do_imports_no_model_library():
    out = _python(
        "import sys\n"
        "from models.registry import pre_annotating_stages, prompted_stages, stage_infos\n"
        "stage_infos(); prompted_stages(); pre_annotating_stages()\n"
        "print(sorted(m for m in ('torch', 'ultralytics', 'segment_anything') if m in sys.modules))"
    )
    assert out == "[]"


# -- evaluation --------------------------------------------------------------------------


def _labelled_set(tmp_path, n: int = 3):
    """``n`` noise photos, each with a door part and a dent, as a TrainingSet."""
    photo = [("front_left_door", (4, 4, 40, 40)), ("dent", (10, 10, 30, 30))]
    return noise_training_set(tmp_path, [photo] * n, size=(48, 64), seed=4, split="test")


class _Oracle(StageBase):
    """Predicts the labels themselves, photo by photo."""

    def __init__(self, data):
        self.data, self.seen = data, 0

    def predict(self, images):
        from core.instances import ImageResult

        self.seen += 1
        return [ImageResult(self.data.records[self.seen - 1].instances)]


def test_default_evaluate_measures_damage_and_part_and_reports_progress(tmp_path):
    data = _labelled_set(tmp_path)
    calls = []
    figures = _Oracle(data).evaluate(data, progress=lambda d, t, info: calls.append((d, t)))
    assert set(figures) == {"damage", "part"}
    assert figures["part"]["coco"]["AP50"] == pytest.approx(1.0)
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_albert_evaluates_all_three_heads_through_the_shared_evaluation(tmp_path):
    from models.albert.stage import AlbertStage

    assert AlbertStage.eval_groups == GROUPS
    assert "evaluate" not in vars(AlbertStage)  # one evaluation, not a copy
    data = _labelled_set(tmp_path, n=2)
    st = registry.build("albert", {"preset": "tiny", "device": "cpu"}, taxonomy=data.taxonomy)
    calls = []
    figures = st.evaluate(data, progress=lambda d, t, info: calls.append(d))
    assert set(figures) == set(GROUPS) and calls == [1, 2]


def test_assist_net_evaluates_box_prompts_with_progress(tmp_path):
    data = _labelled_set(tmp_path, n=2)
    st = registry.build("assist_net", {"preset": "tiny", "device": "cpu"}, taxonomy=data.taxonomy)
    calls = []
    figures = st.evaluate(data, progress=lambda d, t, info: calls.append(d))
    assert figures["parts"] == 4 and 0.0 <= figures["mean_iou"] <= 1.0
    assert calls == [1, 2]


# -- torch threads --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["assist_net", "part_classifier", "albert"])
def test_building_or_loading_a_stage_leaves_torch_threads_alone(name, tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        st = registry.build(name, {"preset": "tiny", "device": "cpu"})
        assert torch.get_num_threads() == 3
        registry.load(st.save(tmp_path / f"{name}.pt"), device="cpu")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_apply_process_settings_sets_torch_threads_only_when_asked():
    import torch

    from models.runtime import apply_process_settings

    before = torch.get_num_threads()
    try:
        apply_process_settings(Settings(torch_threads=3))
        assert torch.get_num_threads() == 3
        apply_process_settings(Settings(torch_threads=None))
        assert torch.get_num_threads() == 3  # unset: nothing is changed
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="torch_threads"):
        Settings(torch_threads=0)


@pytest.mark.parametrize(
    "entry",
    [
        "from cli.main import app\napp(['taxonomy', '--json'], standalone_mode=False)\n",
        "import jobs.worker as w\nw.run_worker = lambda **kw: None\nw.main([])\n",
    ],
    ids=["cli", "worker"],
)
def test_the_entry_applies_panelbeater_torch_threads(tmp_path, entry):
    code = entry + "import torch; print(torch.get_num_threads())"
    out = _python(code, PANELBEATER_TORCH_THREADS="3", PANELBEATER_DATA_DIR=str(tmp_path))
    assert out.splitlines()[-1] == "3"


def test_the_worker_process_gets_the_setting_and_no_thread_cap(monkeypatch):
    from jobs.worker import worker_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = worker_env(Settings(torch_threads=5))
    assert env["PANELBEATER_TORCH_THREADS"] == "5"
    assert "OMP_NUM_THREADS" not in env
