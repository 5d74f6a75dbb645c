"""The promotion rule every new version goes through: a round's and ``panelbeater train``'s."""

from __future__ import annotations

import pytest
from browser_helpers import model_version
from conftest import requires_datasets


def test_is_better_refuses_a_worse_version_and_a_first_assist_net_below_grabcut() -> None:
    from services.training.registry import is_better

    old = model_version("yolo_seg", 1, {"holdout": {"part": {"coco": {"AP50": 0.40}}}})
    worse = model_version("yolo_seg", 2, {"holdout": {"part": {"coco": {"AP50": 0.30}}}})
    better = model_version("yolo_seg", 3, {"holdout": {"part": {"coco": {"AP50": 0.55}}}})
    assert is_better(worse, old)[0] is False
    ok, why = is_better(better, old)
    assert ok and "0.5500 vs yolo_seg-v1 0.4000" in why
    # a first assist_net replaces GrabCut, not nothing: it must beat GrabCut's figure
    net = model_version("assist_net", 1, {"holdout": {"mean_iou": 0.41}})
    ok, why = is_better(net, None, baseline=("grabcut", {"mean_iou": 0.52}))
    assert not ok and why == "holdout.mean_iou: assist_net-v1 0.4100 vs grabcut 0.5200"
    assert is_better(net, None, baseline=("grabcut", {"mean_iou": 0.30}))[0]
    # unmeasured, it is not promoted over GrabCut either
    assert not is_better(model_version("assist_net", 1, {}), None, baseline=("grabcut", {}))[0]


@requires_datasets
@pytest.mark.timeout(240)
def test_cli_train_evaluates_on_the_holdout_and_refuses_a_worse_version(
    db_session, labelled_project, monkeypatch, bar_off
) -> None:
    """``panelbeater train --promote`` measures each version on the held-out split (so it has
    a primary metric) and promotes it only when it beats the promoted one."""
    from typer.testing import CliRunner

    import services.training.model_runs as runs
    from cli.main import app
    from db.session import session_scope
    from services.training.registry import current, primary_metric

    db_session.commit()
    real_evaluate = runs.evaluate_stage
    scripted = iter([0.50, 0.20])  # the second version measures worse than the first

    def evaluate(session, project, stage, **kw):
        figures = real_evaluate(session, project, stage, **kw)  # the real held-out run
        mv = runs.resolve_version(session, stage, kw.get("version"))
        mv.metrics = {**mv.metrics, "holdout": {"damage": {"macro_f1": next(scripted)}}}
        session.add(mv)
        return figures

    monkeypatch.setattr(runs, "evaluate_stage", evaluate)
    args = ["train", "albert", "--epochs", "1", "--device", "cpu", "--promote"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "not promoted (kept albert-v1)" in second.output
    with session_scope() as s:
        assert current(s, "albert").name == "albert-v1"
        v2 = runs.resolve_version(s, "albert", "v2")
        assert primary_metric(v2.metrics, "albert") == ("holdout.damage.macro_f1", 0.20)
        assert v2.metrics["promotion"] == {
            "promoted": False,
            "reason": "holdout.damage.macro_f1: albert-v2 0.2000 vs albert-v1 0.5000; "
            "not promoted (kept albert-v1)",
        }
