"""What a labelled photo cost, counted by the simulated annotator (``active_learning.effort``)
with the project's real assistance, from the predictions that were shown for it to its labels.

- :func:`assist_callable`: an assistance back end (``models.assist``: GrabCut, assist_net,
  SAM), with a photo set, as the simulated annotator calls it;
- :func:`shown_versions` / :func:`shown_predictions`: which model versions' predictions a
  photo was shown: per stage, the newest version that had processed the photo
  (``ImagePrediction``) before the photo was last changed (``Image.updated_at``: labelled,
  reviewed). Rounds pre-annotate only photos still unlabelled, so a later version's rows
  on a labelled photo are rare; withdrawn rows count, as they were shown before withdrawal;
- :func:`photo_effort`: the tally of one photo (with these predictions, and with none: the
  assistance-only baseline), per group (damage, fake, part) and added up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlmodel import Session, select

from active_learning.effort import Assist, Prompt, Tally, simulate_photo
from core.geometry import Shape
from core.instances import Instances
from db.models import Image, ImagePrediction, ModelVersion, Prediction
from models.assist import Assistant
from services.labelling.images import load_image_array
from services.labelling.readers import current_annotations


def assist_callable(assistant: Assistant, height: int, width: int) -> Assist:
    """``assistant`` (its photo already set, ``height`` x ``width`` pixels) as an
    :data:`active_learning.effort.Assist`: prompts in those pixels, answers rasterised there.

    OpenCV's random generator is seeded before each prompt: GrabCut's colour models start
    from k-means on it, and without the seed the same prompt gets a different answer each
    time (two counts of one photo differed by 15%), which would drown the differences the
    count is for."""
    import cv2

    def ask(prompt: Prompt) -> np.ndarray | None:
        cv2.setRNGSeed(0)
        has_points = len(prompt.points) > 0
        result = assistant.predict(
            points=prompt.points if has_points else None,
            labels=prompt.labels if has_points else None,
            box=prompt.box,
        )
        return None if result.shape is None else result.shape.to_mask(height, width)

    return ask


def shown_versions(session: Session, image: Image) -> list[ModelVersion]:
    """The model versions whose predictions ``image`` was shown (at most one per stage, by
    stage name), see the module docstring; empty when no model had processed it."""
    return shown_versions_of(session, [image])[image.id]


def shown_versions_of(session: Session, images: list[Image]) -> dict[int, list[ModelVersion]]:
    """:func:`shown_versions` of many photos in one query: image id -> versions."""
    when = {im.id: im.updated_at for im in images}
    newest: dict[int, dict[str, tuple[Any, ModelVersion]]] = {i: {} for i in when}
    for chunk in range(0, len(images), 500):
        ids = [im.id for im in images[chunk : chunk + 500]]
        rows = session.exec(
            select(ImagePrediction.image_id, ImagePrediction.created_at, ModelVersion)
            .join(ModelVersion, ImagePrediction.model_version_id == ModelVersion.id)
            .where(ImagePrediction.image_id.in_(ids))
        ).all()
        for image_id, at, mv in rows:
            if at > when[image_id]:
                continue  # processed after the photo was labelled: not shown for it
            best = newest[image_id].get(mv.stage)
            if best is None or (at, mv.version) > (best[0], best[1].version):
                newest[image_id][mv.stage] = (at, mv)
    return {i: [by[s][1] for s in sorted(by)] for i, by in newest.items()}


def shown_predictions(
    session: Session, image: Image, versions: Iterable[ModelVersion]
) -> dict[str, Instances]:
    """The photo's predictions of ``versions``, by group."""
    ids = [mv.id for mv in versions]
    if not ids:
        return {}
    rows = session.exec(
        select(Prediction).where(
            Prediction.image_id == image.id, Prediction.model_version_id.in_(ids)
        )
    ).all()
    return _by_group((r.group, r.geometry, r.class_id) for r in rows)


def labelled_instances(session: Session, image: Image) -> dict[str, Instances]:
    """The photo's current labels, by group."""
    return _by_group(
        (a.group, a.geometry, a.class_id) for a in current_annotations(session, image.id)
    )


def _by_group(items: Iterable[tuple[str, Any, int]]) -> dict[str, Instances]:
    groups: dict[str, tuple[list[Shape], list[int]]] = {}
    for group, geometry, class_id in items:
        shape = Shape.from_json(geometry, trusted=True)
        shapes, classes = groups.setdefault(group, ([], []))
        shapes.append(shape)
        classes.append(class_id)
    return {
        g: Instances(shapes=s, class_ids=np.array(c, dtype=np.int64))
        for g, (s, c) in groups.items()
    }


@dataclass
class PhotoEffort:
    """One photo: ``shown`` the tally from its predictions, ``assist_only`` from none (the
    assistance-only baseline; ``by_hand`` of either is the vertices-by-hand baseline)."""

    shown: Tally
    assist_only: Tally
    backend: str


def photo_effort(
    pixels: np.ndarray,
    width: int,
    height: int,
    truth: dict[str, Instances],
    shown: dict[str, Instances],
    assistant: Assistant,
    *,
    baseline: bool = True,
) -> PhotoEffort:
    """Count one photo. ``pixels``: the photo as the assistance sees it (``(h, w, 3)`` uint8,
    the workspace's size, aspect kept); ``width`` x ``height``: its original size, in which
    ``truth`` and ``shown`` (by group) are. ``baseline`` False skips the assistance-only
    count (its tally is then all zeros). With nothing shown the two counts are one."""
    h, w = pixels.shape[:2]
    scale = w / width
    assistant.set_image(pixels)
    ask = assist_callable(assistant, h, w)
    with_shown, alone = Tally(), Tally()
    for group in sorted({*truth, *shown}):
        t = truth.get(group, Instances.empty())
        s = shown.get(group, Instances.empty())
        tally = simulate_photo(t, s, ask, height, width, scale=scale)
        with_shown = with_shown + tally
        if baseline:
            alone = alone + (
                simulate_photo(t, Instances.empty(), ask, height, width, scale=scale)
                if len(s)
                else tally
            )
    with_shown.photos = alone.photos = 1
    return PhotoEffort(with_shown, alone, assistant.backend)


def stored_photo_effort(
    session: Session,
    image: Image,
    assistant: Assistant,
    *,
    max_side: int,
    baseline: bool = True,
) -> tuple[PhotoEffort, list[ModelVersion]]:
    """:func:`photo_effort` of a stored photo: its labels against the predictions it was
    shown (:func:`shown_versions`); also returns those versions."""
    versions = shown_versions(session, image)
    pixels = load_image_array(image, max_side=max_side)
    effort = photo_effort(
        pixels,
        image.width,
        image.height,
        labelled_instances(session, image),
        shown_predictions(session, image, versions),
        assistant,
        baseline=baseline,
    )
    return effort, versions
