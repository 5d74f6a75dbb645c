"""Semi-supervised rounds: a model's confident predictions on unlabelled photos as extra
training data (pseudo-labels), with the ``pseudo_labels`` setting on.

Which predictions (:func:`pseudo_snapshot`, taken when a round trains a stage): the pending
predictions of the stage's promoted version (else of its promoted rival's, the model whose
pre-annotations the photos carry) on photos that are neither labelled nor reviewed nor in the
held-out split and hold no one's annotations yet, whose score reaches their class's
threshold (:func:`class_thresholds`: the class's own ``pseudo_label_class_scores`` entry,
else ``pseudo_label_min_score``). Photos with none left are not used.

Why a fixed score per class rather than one derived from held-out precision: a round's
promoted version may have no per-class held-out figures yet (a first version, or one
promoted by hand), and a lead can read and set a score; a class the held-out figures show
weak is given a higher one in ``pseudo_label_class_scores``.

How they are kept apart from people's work: the rows stay ``Prediction`` rows, pending as
they were; nothing is written to ``Annotation``, so no export and no accepted annotation
ever holds them. The round's snapshot names the chosen prediction ids (``snapshot["pseudo"]``,
kept in the new version's ``train_snapshot`` with the counts), and :func:`pseudo_records`
reads them back as records marked ``meta["pseudo"]`` whose instances carry
``data["pseudo"] = True``. Only training reads them: the held-out measurement reads the
labelled held-out photos alone (``model_runs.training_set`` without a snapshot).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlmodel import Session, select

from core.config import env_name
from core.instances import Instances
from core.records import ImageRecord
from core.taxonomy import Taxonomy
from db.models import (
    LABELLED_STATUSES,
    Annotation,
    Image,
    ModelVersion,
    Prediction,
    PredictionState,
    Project,
)
from services.errors import Invalid
from services.training.predictions import rows_to_instances
from services.training.records import image_record


def class_thresholds(
    taxonomy: Taxonomy, min_score: float, class_scores: dict[str, float] | None = None
) -> dict[int, float]:
    """Class id -> the score a prediction of that class must reach: ``class_scores[name]``
    where given, else ``min_score``. Raises Invalid naming an unknown class or a score
    outside (0, 1]."""
    out = {c.id: float(min_score) for c in taxonomy}
    for name, score in (class_scores or {}).items():
        cls = taxonomy.get(name)
        if cls is None:
            raise Invalid(
                f"{env_name('pseudo_label_class_scores')} names {name!r}, which is no class of "
                f"taxonomy {taxonomy.source}; use a class name such as {next(iter(taxonomy)).name!r}"
            )
        if not 0.0 < float(score) <= 1.0:
            raise Invalid(
                f"{env_name('pseudo_label_class_scores')}[{name!r}] is {score}; a score must be "
                "above 0 and at most 1"
            )
        out[cls.id] = float(score)
    return out


def confident_instances(
    predictions: Instances, thresholds: dict[int, float], default: float = 1.0
) -> Instances:
    """The predictions whose score reaches their class's threshold (``default`` for a class
    not in ``thresholds``), as pseudo-labels: shapes and class ids only, with
    ``data["pseudo"] = True`` and ``data["prediction_id"]`` where the predictions had it.
    A prediction without a score is never confident."""
    if not len(predictions) or predictions.scores is None:
        return Instances.empty()
    need = np.array(
        [thresholds.get(int(c), default) for c in predictions.class_ids], dtype=np.float32
    )
    keep = np.flatnonzero(np.asarray(predictions.scores, dtype=np.float32) >= need)
    if not len(keep):
        return Instances.empty()
    data: dict[str, list[Any]] = {"pseudo": [True] * len(keep)}
    if "prediction_id" in predictions.data:
        data["prediction_id"] = [predictions.data["prediction_id"][i] for i in keep]
    return Instances(
        shapes=[predictions.shapes[i] for i in keep],
        class_ids=predictions.class_ids[keep].copy(),
        scores=np.asarray(predictions.scores, dtype=np.float32)[keep],
        data=data,
    )


def source_version(session: Session, stage: str) -> ModelVersion | None:
    """The version whose predictions become ``stage``'s pseudo-labels: its promoted one,
    else its promoted rival's; None when neither is promoted."""
    from models.registry import stage_info
    from services.training.registry import current

    for name in (stage, *stage_info(stage).rivals):
        mv = current(session, name)
        if mv is not None:
            return mv
    return None


def pseudo_snapshot(
    session: Session,
    project: Project,
    stage: str,
    taxonomy: Taxonomy,
    *,
    min_score: float,
    class_scores: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The pseudo-labels ``stage`` would train on now (module docstring), as the round's
    snapshot keeps them: ``{"version", "min_score", "class_scores", "prediction_ids",
    "photos", "instances"}``; ``version`` None and no ids when no version is promoted."""
    from services.training.registry import HOLDOUT_SPLIT

    thresholds = class_thresholds(taxonomy, min_score, class_scores)
    out: dict[str, Any] = {
        "version": None,
        "min_score": float(min_score),
        "class_scores": dict(class_scores or {}),
        "prediction_ids": [],
        "photos": 0,
        "instances": 0,
    }
    mv = source_version(session, stage)
    if mv is None:
        return out
    out["version"] = mv.name
    # a photo someone has begun to label (their polygons would disagree with the model's)
    people = select(Annotation.image_id).where(Annotation.deleted == False)  # noqa: E712
    rows = session.exec(
        select(Prediction)
        .join(Image, Image.id == Prediction.image_id)
        .where(
            Image.project_id == project.id,
            Image.status.not_in(LABELLED_STATUSES),
            Image.split != HOLDOUT_SPLIT,
            Image.id.not_in(people),
            Prediction.model_version_id == mv.id,
            Prediction.state == PredictionState.pending,
        )
        .order_by(Prediction.image_id, Prediction.id)
    ).all()
    kept = confident_instances(rows_to_instances(rows), thresholds, default=float(min_score))
    ids = list(kept.data.get("prediction_id", []))
    by_id = {p.id: p.image_id for p in rows}
    out["prediction_ids"] = ids
    out["photos"] = len({by_id[i] for i in ids})
    out["instances"] = len(ids)
    return out


def pseudo_records(session: Session, project: Project, pseudo: dict[str, Any]) -> list[ImageRecord]:
    """The snapshot's pseudo-labels as training records, one per photo, in photo order:
    ``meta["pseudo"]`` True and every instance ``data["pseudo"] = True``. A prediction
    deleted since the snapshot (a photo predicted again) is left out, and so is a photo
    labelled or moved to the held-out split since."""
    from services.training.registry import HOLDOUT_SPLIT

    ids = [int(i) for i in pseudo.get("prediction_ids", [])]
    if not ids:
        return []
    rows: list[Prediction] = []
    for chunk in _chunks(ids):  # a pool of thousands would pass SQLite's parameter limit
        rows += session.exec(select(Prediction).where(Prediction.id.in_(chunk))).all()
    rows.sort(key=lambda p: (p.image_id, p.id))
    images: dict[int, Image] = {}
    for chunk in _chunks(sorted({p.image_id for p in rows})):
        for img in session.exec(
            select(Image).where(
                Image.project_id == project.id,
                Image.id.in_(chunk),
                Image.status.not_in(LABELLED_STATUSES),
                Image.split != HOLDOUT_SPLIT,
            )
        ):
            images[img.id] = img
    by_image: dict[int, list[Prediction]] = {}
    for p in rows:
        if p.image_id in images:
            by_image.setdefault(p.image_id, []).append(p)
    records = []
    for image_id, preds in sorted(by_image.items(), key=lambda kv: kv[0]):
        img = images[image_id]
        inst = confident_instances(rows_to_instances(preds), {}, default=0.0)
        records.append(image_record(img, inst, pseudo=True))
    return records


def _chunks(ids: list[int], size: int = 900) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def pseudo_phrase(snapshot: dict[str, Any] | None) -> str:
    """A version's pseudo-labels in a few words for the dashboard ("+ 12 pseudo-labelled
    photos (80 instances)"); empty when it trained on none."""
    pseudo = (snapshot or {}).get("pseudo") or {}
    if not pseudo.get("photos"):
        return ""
    return f"+ {pseudo['photos']} pseudo-labelled photos ({pseudo['instances']} instances)"


def pseudo_sentence(stage: str, pseudo: dict[str, Any]) -> str:
    """What a round's stage takes as pseudo-labels, for the round's steps."""
    if pseudo.get("version") is None:
        return f"{stage}: no pseudo-labels (neither it nor a rival has a promoted version)"
    if not pseudo.get("photos"):
        return (
            f"{stage}: no pseudo-labels ({pseudo['version']} has no pending prediction of an "
            f"unlabelled photo scoring {pseudo['min_score']:g} or more)"
        )
    return (
        f"{stage}: {pseudo['photos']} pseudo-labelled photos ({pseudo['instances']} instances, "
        f"scores from {pseudo['min_score']:g}) from {pseudo['version']}"
    )


def with_pseudo_labels(
    session: Session,
    project: Project,
    stage: str,
    snapshot: dict[str, Any],
    *,
    enabled: bool | None = None,
) -> dict[str, Any]:
    """A round's ``snapshot`` for training ``stage``: with ``snapshot["pseudo"]``
    (:func:`pseudo_snapshot`, thresholds from the settings) when ``enabled`` (None: the
    ``pseudo_labels`` setting), else the snapshot unchanged."""
    from core.config import get_settings
    from services.accounts.projects import project_taxonomy

    settings = get_settings()
    if not (settings.pseudo_labels if enabled is None else enabled):
        return snapshot
    pseudo = pseudo_snapshot(
        session,
        project,
        stage,
        project_taxonomy(project),
        min_score=settings.pseudo_label_min_score,
        class_scores=settings.pseudo_label_class_scores,
    )
    return {**snapshot, "pseudo": pseudo}
