"""``Prediction`` rows <-> :class:`core.instances.Instances`: the one place that converts them.

It also says why a version shows nothing (:func:`empty_result_reason`).

A stage's :class:`~core.instances.ImageResult` is stored by :func:`store_predictions` (one
``Prediction`` row per instance, one ``ImagePrediction`` row per image); everything that
reads predictions back (active learning, exports) goes through :func:`rows_to_instances`.

Columns of the round trip:

- ``Prediction.geometry`` <-> ``shapes`` (original pixels, holes and several parts kept);
- ``class_id`` / ``score`` <-> ``class_ids`` / ``scores``;
- ``probs`` (head -> list) <-> ``probs`` (head -> ``(N, C)`` float32). A row without a head
  gets a NaN row there; a shorter vector is padded with zeros to the head's widest;
- ``embedding`` (float16 bytes) <-> ``embeddings`` ``(N, D)`` float32, NaN rows for rows
  without one; None when no row has one;
- ``extra`` (dict) <-> one ``data`` column per key, None where a row lacks the key;
- ``id``, ``image_id``, ``model_version_id``, ``group`` -> ``data`` columns of the same names
  (:data:`ROW_COLUMNS`); ``group`` is written back, the others are set by the caller.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlmodel import Session, select

from core.geometry import Shape
from core.instances import ImageResult, Instances
from core.taxonomy import Taxonomy
from db.models import Image, ImagePrediction, ModelVersion, Prediction
from services.training.bar import withheld_classes

#: ``data`` columns that mirror ``Prediction`` fields rather than ``Prediction.extra`` keys.
ROW_COLUMNS = ("prediction_id", "image_id", "model_version_id", "group")
#: Decimal places kept of each probability in ``Prediction.probs``.
PROB_DIGITS = 6


def encode_embedding(vector: np.ndarray | None) -> bytes | None:
    """``(D,)`` floats -> float16 bytes as stored; None (or an all-NaN row) -> None."""
    if vector is None:
        return None
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    return None if np.isnan(v).all() else v.astype(np.float16).tobytes()


def decode_embedding(raw: bytes | None) -> np.ndarray | None:
    """Stored float16 bytes -> ``(D,)`` float32; None stays None."""
    return None if raw is None else np.frombuffer(raw, dtype=np.float16).astype(np.float32)


def rows_to_instances(rows: Sequence[Prediction]) -> Instances:
    """The rows' instances, in the rows' order (see the module docstring for the columns)."""
    if not rows:
        return Instances.empty()
    return Instances(
        shapes=[Shape.from_json(p.geometry, trusted=True) for p in rows],
        class_ids=np.array([p.class_id for p in rows], dtype=np.int64),
        scores=np.array([p.score for p in rows], dtype=np.float32),
        probs=_probs(rows),
        embeddings=_embeddings(rows),
        data={
            "prediction_id": [p.id for p in rows],
            "image_id": [p.image_id for p in rows],
            "model_version_id": [p.model_version_id for p in rows],
            "group": [p.group for p in rows],
            **{
                key: [(p.extra or {}).get(key) for p in rows]
                for key in dict.fromkeys(k for p in rows for k in (p.extra or {}))
                if key not in ROW_COLUMNS
            },
        },
    )


def _probs(rows: Sequence[Prediction]) -> dict[str, np.ndarray]:
    widths: dict[str, int] = {}
    for p in rows:
        for head, vec in (p.probs or {}).items():
            widths[head] = max(widths.get(head, 0), len(vec))
    out = {}
    for head, width in widths.items():
        a = np.full((len(rows), width), np.nan, dtype=np.float32)
        for i, p in enumerate(rows):
            vec = (p.probs or {}).get(head)
            if vec is not None:
                a[i] = 0.0
                a[i, : len(vec)] = vec
        out[head] = a
    return out


def _embeddings(rows: Sequence[Prediction]) -> np.ndarray | None:
    vecs = [decode_embedding(p.embedding) for p in rows]
    dims = {len(v) for v in vecs if v is not None}
    if not dims:
        return None
    if len(dims) > 1:
        raise ValueError(
            f"predictions {[p.id for p in rows]} carry embeddings of different lengths "
            f"{sorted(dims)}; convert one model version's rows at a time"
        )
    out = np.full((len(rows), dims.pop()), np.nan, dtype=np.float32)
    for i, v in enumerate(vecs):
        if v is not None:
            out[i] = v
    return out


def predictions_by_image(rows: Iterable[Prediction]) -> dict[int, Instances]:
    """Image id -> that image's instances, rows kept in their given order."""
    grouped: dict[int, list[Prediction]] = defaultdict(list)
    for p in rows:
        grouped[p.image_id].append(p)
    return {image_id: rows_to_instances(ps) for image_id, ps in grouped.items()}


def version_predictions(
    session: Session, version_id: int, *, image_ids: set[int] | None = None
) -> dict[int, Instances]:
    """A model version's predictions per image (every state), in the order they were stored;
    only the images in ``image_ids`` when it is given."""
    rows = session.exec(
        select(Prediction).where(Prediction.model_version_id == version_id).order_by(Prediction.id)
    ).all()
    return predictions_by_image(p for p in rows if image_ids is None or p.image_id in image_ids)


def instances_to_rows(
    instances: Instances,
    *,
    image_id: int,
    model_version_id: int,
    taxonomy: Taxonomy | None = None,
) -> list[Prediction]:
    """``Prediction`` rows (not yet added to a session) for one image's instances.

    The group is ``data["group"]`` when present, else the class's taxonomy group ("part"
    for a class the taxonomy lacks). Other ``data`` columns, minus :data:`ROW_COLUMNS` and
    None values, become ``extra``.
    """
    groups = instances.data.get("group")
    rows = []
    for i in range(len(instances)):
        cid = int(instances.class_ids[i])
        if groups is not None:
            group = str(groups[i])
        elif taxonomy is not None and cid in taxonomy:
            group = taxonomy.by_id(cid).group
        else:
            group = "part"
        rows.append(
            Prediction(
                image_id=image_id,
                model_version_id=model_version_id,
                class_id=cid,
                group=group,
                geometry=instances.shapes[i].to_json(),
                score=float(instances.scores[i]),
                probs={
                    head: [round(float(v), PROB_DIGITS) for v in p[i]]
                    for head, p in instances.probs.items()
                    if not np.isnan(p[i]).all()
                },
                embedding=encode_embedding(
                    None if instances.embeddings is None else instances.embeddings[i]
                ),
                extra={
                    key: _jsonable(col[i])
                    for key, col in instances.data.items()
                    if key not in ROW_COLUMNS and col[i] is not None
                },
            )
        )
    return rows


def store_predictions(
    session: Session,
    image: Image,
    version: ModelVersion,
    result: ImageResult,
    taxonomy: Taxonomy | None,
) -> None:
    """Add one image's predictions and the ``ImagePrediction`` row that marks the image as
    processed by ``version`` (with its image embedding) to the session; the caller commits.
    Instances of classes the version withholds (below the bar on held-out photos,
    :func:`services.training.bar.withheld_classes`) are not stored."""
    instances = result.instances
    withheld = withheld_classes(version)
    if withheld and len(instances):
        instances = instances[~np.isin(instances.class_ids, list(withheld))]
    session.add_all(
        instances_to_rows(
            instances, image_id=image.id, model_version_id=version.id, taxonomy=taxonomy
        )
    )
    session.add(
        ImagePrediction(
            image_id=image.id,
            model_version_id=version.id,
            embedding=encode_embedding(result.image_embedding),
        )
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


# ---------- why a promoted model shows nothing ----------

#: Config fields that hold a stage's score threshold (yolo_seg ``conf``; albert and
#: mask_rcnn ``score_threshold``): predictions below it are never stored.
THRESHOLD_FIELDS = ("conf", "score_threshold")


def score_threshold(config: dict[str, Any] | None) -> tuple[str, float] | None:
    """(field, value) of the score threshold in a version's config, or None."""
    for name in THRESHOLD_FIELDS:
        value = (config or {}).get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return name, float(value)
    return None


def version_yield(session: Session, project_id: int, version_id: int) -> dict[str, int]:
    """``{"photos", "predictions"}``: photos of the project a version has processed, and the
    predictions (every state) it stored on them."""
    from sqlmodel import func

    photos = session.exec(
        select(func.count(ImagePrediction.image_id))
        .join(Image, Image.id == ImagePrediction.image_id)
        .where(ImagePrediction.model_version_id == version_id, Image.project_id == project_id)
    ).one()
    preds = session.exec(
        select(func.count(Prediction.id))
        .join(Image, Image.id == Prediction.image_id)
        .where(Prediction.model_version_id == version_id, Image.project_id == project_id)
    ).one()
    return {"photos": int(photos), "predictions": int(preds)}


def empty_result_reason(
    version: ModelVersion, photos: int, predictions: int, primary: tuple[str, float] | None
) -> str | None:
    """A sentence saying why ``version`` shows no predictions, or None when it shows some (or
    has not run yet). ``primary``: its held-out (key, value), from the registry."""
    if predictions or not photos:
        return None
    threshold = score_threshold(version.config)
    above = f" above {threshold[1]:g}" if threshold else ""
    if primary is None:
        measured = "it has no held-out metric (evaluate it with `panelbeater evaluate`)"
    else:
        measured = f"its held-out {primary[0].rsplit('.', 1)[-1]} is {primary[1]:.2f}"
    return (
        f"{version.name}: 0 detections{above} on {photos} photos; {measured}; label more or "
        "train longer, or lower the threshold for a photo on the dashboard"
    )
