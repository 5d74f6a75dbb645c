"""No model below its stage's held-out minimum reaches an annotator: it is kept and shown,
never promoted automatically and never writes pending predictions, unless a lead promotes
it by hand after confirming what annotators will see."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import api_client
from conftest import requires_datasets
from sqlmodel import select

from db.models import ModelVersion

ZERO = {"holdout": {"part": {"coco": {"AP": 0.0, "AP50": 0.0}, "miou": 0.06}}}
GOOD = {"holdout": {"part": {"coco": {"AP": 0.2, "AP50": 0.45}, "miou": 0.4}}}


def _version(session, tmp_path: Path, stage: str, metrics: dict, promoted: bool = False):
    from services.training.registry import register_version

    path = tmp_path / f"{stage}-{len(list(tmp_path.iterdir()))}.pt"
    path.write_bytes(b"a model file")
    return register_version(
        session, stage=stage, artifact_path=path, metrics=metrics, promote=promoted
    )


@pytest.mark.parametrize("stage", ["yolo_seg", "part_seg"])
def test_a_first_version_at_zero_is_kept_unpromoted_and_says_why(db_session, tmp_path, stage):
    from services.training.lifecycle import decide, finish

    mv = _version(db_session, tmp_path, stage, ZERO)
    decision = decide(mv, None)
    assert decision.below_bar and not decision.promoted
    kept, reason = finish(db_session, mv, None, decision, keep_losers=False)
    assert kept is mv and not mv.promoted
    assert "trained, below the bar to pre-annotate: AP50 0.00 < 0.20" in reason
    assert "kept unpromoted (a lead may promote it by hand)" in reason
    # one that clears the bar is promoted as a first version
    ok = _version(db_session, tmp_path, stage, GOOD)
    decision = decide(ok, None)
    assert decision.promoted and not decision.below_bar
    assert decision.reason == f"{ok.name} is the stage's first version"


def test_the_bar_is_a_setting_per_stage(db_session, tmp_path, monkeypatch):
    from core.config import get_settings
    from services.training.bar import bar_for, verdict

    assert bar_for("yolo_seg").minimum == 0.2 and bar_for("assist_net") is None
    monkeypatch.setattr(get_settings(), "pre_annotate_minimum", {"yolo_seg": 0.5})
    said = verdict("yolo_seg", GOOD)
    assert not said.passes and said.sentence.endswith("AP50 0.45 < 0.50")
    assert verdict("part_seg", GOOD).passes  # another stage keeps its own bar


def test_below_the_bar_it_writes_no_predictions_until_a_lead_confirms(
    db_session, project, tmp_path
):
    from services.errors import Invalid
    from services.training.bar import CONFIRMED_BELOW_BAR, may_pre_annotate
    from services.training.model_runs import predict_stage
    from services.training.registry import promote

    mv = _version(db_session, tmp_path, "yolo_seg", ZERO)
    with pytest.raises(Invalid, match="does not pre-annotate: it is trained, below the bar"):
        predict_stage(db_session, project, "yolo_seg", version=mv.name)
    with pytest.raises(Invalid, match="annotators will see its polygons") as e:
        promote(db_session, mv.name)
    assert "Confirm to promote it anyway" in str(e.value) and not mv.promoted
    promote(db_session, mv.name, confirm_below_bar=True)
    assert mv.promoted and mv.metrics["promotion"][CONFIRMED_BELOW_BAR] is True
    assert may_pre_annotate(mv).passes
    assert "promoted by hand after confirmation" in may_pre_annotate(mv).sentence


def test_the_api_asks_for_the_confirmation(tmp_path):
    from db.session import session_scope

    client, _seeded, login = api_client(tmp_path / "data")
    with session_scope() as s:
        name = _version(s, tmp_path, "part_seg", ZERO).name
    lead = login("lead")
    r = client.post(f"/api/models/{name}/promote", headers=lead)
    assert r.status_code == 422 and "below the bar to pre-annotate" in r.json()["detail"]
    r = client.post(f"/api/models/{name}/promote?confirm_below_bar=true", headers=lead)
    assert r.status_code == 200 and r.json()["promoted"] is True


@requires_datasets
@pytest.mark.timeout(240)
def test_train_prints_what_it_measured_and_the_verdict(db_session, labelled_project):
    from typer.testing import CliRunner

    from cli.main import app

    db_session.commit()
    out = CliRunner().invoke(
        app, ["train", "yolo_seg", "--epochs", "1", "--device", "cpu", "--promote"]
    )
    assert out.exit_code == 0, out.output
    assert "yolo_seg-v1 held-out: " in out.output and "part.coco.AP50" in out.output
    assert "below the bar to pre-annotate: AP50" in out.output, out.output
    db_session.expire_all()
    mv = db_session.exec(select(ModelVersion).where(ModelVersion.stage == "yolo_seg")).one()
    assert not mv.promoted  # a tiny run from random weights does not reach annotators
