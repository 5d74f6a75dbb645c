"""Quality checks: overlap photos, gold photos, and who sees and saves which labels.

**Overlap.** A lead sets a share of photos to be labelled independently by n annotators
(:func:`set_quality_settings`, :func:`apply_overlap`: ``Image.overlap_target = n``). An
annotator's saves of such a photo go to their own ``AnnotationSet`` (kind ``overlap``), and
reading it shows them only that set, so nobody sees the others' work. When n sets are
submitted (the annotator marks the photo labelled), :func:`complete_overlap` measures their
agreement (``services.review.agreement``), stores it (``PhotoAgreement``), writes the quorum
consensus as the photo's working set (status labelled, for a reviewer to approve), and puts a
photo of low agreement at the head of the review queue.

**Gold.** A lead marks a reviewed photo as gold (:func:`mark_gold`): its working set is frozen
as the gold labels (an ``AnnotationSet`` of kind ``gold``). A share of each annotator's queue
is gold photos, shown as ordinary new photos without labels (:func:`queue_ids_for`,
:func:`detail_for`); the annotator's labels go to their own set (kind ``gold_submission``),
which on submission is scored against the gold labels (``services.review.gold``). Neither the gold
labels nor the working set are ever written by a submission.

Only users who may not review are routed this way: reviewers and leads work on the working
set as ever, and they are the ones who approve a consensus.

The queue hand-out (``services.labelling.leases``) asks :func:`candidate_filter` which photos a user may
be handed (an overlap photo until n annotators have it, never a photo the user already
submitted) and :func:`queue_ids_for` for the order with gold photos mixed in.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import Session

from db.models import (
    AnnotationSet,
    Image,
    ImageStatus,
    PhotoAgreement,
    Project,
    User,
    utcnow,
)
from services.accounts import users as user_service
from services.accounts.projects import project_taxonomy, require_member
from services.accounts.users import Permission
from services.errors import Forbidden, Invalid, NotFound, VersionConflict
from services.labelling import readers, saves, statuses, validation
from services.labelling.routing import (
    GOLD,
    GOLD_SUBMISSION,
    OVERLAP,
    QualitySettings,
    detail_for,
    gold_set,
    own_set,
    project_quality_settings,
    routed_kind,
    spread_key,
)
from services.review import agreement
from services.review import gold as gold_scoring
from services.review.throughput import CONSENSUS_AUTHOR

#: Queue scores of active learning lie in [0, 2); a low-agreement photo gets 2 + (1 - F1),
#: so it leads the queue of labelled photos that reviewers walk.
REVIEW_FIRST_SCORE = 2.0


# ---------- settings ----------


#: field -> (low, high) accepted by :func:`set_quality_settings` (None: a bool)
_RANGES: dict[str, tuple[float, float] | None] = {
    "overlap_share": (0.0, 1.0),
    "overlap_annotators": (2, 20),
    "gold_share": (0.0, 1.0),
    "gold_feedback": None,
    "iou_threshold": (0.01, 1.0),
    "quorum": (0.01, 1.0),
    "low_agreement": (0.0, 1.0),
}


def review_first_scores(session: Session, project: Project) -> dict[int, float]:
    """Queue scores that put the project's low-agreement overlap photos at the head of the
    review queue (``REVIEW_FIRST_SCORE`` + disagreement), for whoever rewrites the scores:
    an active-learning selection must not undo the routing."""
    threshold = project_quality_settings(project).low_agreement
    rows = session.exec(
        select(PhotoAgreement.image_id, PhotoAgreement.f1).where(
            PhotoAgreement.project_id == project.id, PhotoAgreement.f1 < threshold
        )
    ).all()
    return {int(i): REVIEW_FIRST_SCORE + (1.0 - float(f1)) for i, f1 in rows}


def _require_lead(session: Session, user: User, project: Project) -> None:
    require_member(session, user, project)
    if not user_service.can(user, Permission.dashboard):
        raise Forbidden(f"Your role ({user.role.value}) may not change quality checks; ask a lead.")


def set_quality_settings(
    session: Session, user: User, project: Project, **changes: Any
) -> QualitySettings:
    """A lead's change of the project's quality settings (only the fields given), then
    :func:`apply_overlap`. Invalid names the field and its range."""
    _require_lead(session, user, project)
    names = {f.name for f in fields(QualitySettings)}
    current = {**(project.quality or {})}
    for key, value in changes.items():
        if value is None:
            continue
        if key not in names:
            raise Invalid(
                f"{key!r} is not a quality setting; use one of {', '.join(sorted(names))}"
            )
        bounds = _RANGES[key]
        if bounds is None:
            if not isinstance(value, bool):
                raise Invalid(f"{key} must be true or false, not {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise Invalid(f"{key} must be a number between {bounds[0]} and {bounds[1]}")
            if not bounds[0] <= value <= bounds[1] or not math.isfinite(value):
                raise Invalid(f"{key} must be between {bounds[0]} and {bounds[1]}, not {value}")
            if key == "overlap_annotators" and value != int(value):
                raise Invalid(f"overlap_annotators must be a whole number, not {value}")
            value = int(value) if key == "overlap_annotators" else float(value)
        current[key] = value
    project.quality = current
    session.add(project)
    session.flush()
    settings = project_quality_settings(project)
    apply_overlap(session, project, settings)
    return settings


def apply_overlap(session: Session, project: Project, settings: QualitySettings) -> int:
    """Mark new photos as overlap photos until ``overlap_share`` of the project's ordinary
    photos are; returns how many are marked now. Open overlap photos take the current n.
    Lowering the share unmarks only photos nobody has started on."""
    # Three columns, not whole rows: a project may hold a hundred thousand photos.
    rows = session.execute(
        select(Image.id, Image.overlap_target, Image.status).where(
            Image.project_id == project.id,
            Image.gold == False,  # noqa: E712
        )
    ).all()
    started = set(
        session.execute(
            select(AnnotationSet.image_id).where(
                AnnotationSet.project_id == project.id, AnnotationSet.kind == OVERLAP
            )
        ).scalars()
    )
    done = set(
        session.execute(
            select(PhotoAgreement.image_id).where(PhotoAgreement.project_id == project.id)
        ).scalars()
    )
    n = settings.overlap_annotators
    want = math.floor(settings.overlap_share * len(rows) + 1e-9)
    marked = [i for i, target, _ in rows if target > 0]
    retarget = [i for i, target, _ in rows if target > 0 and target != n and i not in done]
    add: list[int] = []
    drop: list[int] = []
    if len(marked) < want:
        fresh = sorted(
            (i for i, target, status in rows if target == 0 and status == ImageStatus.new),
            key=lambda i: spread_key(i, f"overlap{project.id}"),
        )
        add = fresh[: want - len(marked)]
    elif len(marked) > want:
        idle = [i for i in marked if i not in started and i not in done]
        drop = idle[: len(marked) - want]
    for ids, target in ((retarget + add, n), (drop, 0)):
        for k in range(0, len(ids), 1000):  # bounded IN lists (SQLite's variable limit)
            session.execute(
                update(Image).where(Image.id.in_(ids[k : k + 1000])).values(overlap_target=target),
                execution_options={"synchronize_session": "fetch"},
            )
    session.flush()
    return len(marked) + len(add) - len(drop)


def count_overlap(session: Session, project: Project) -> int:
    """How many of the project's photos are overlap photos (open or done)."""
    return int(
        session.execute(
            select(func.count(Image.id)).where(
                Image.project_id == project.id, Image.overlap_target > 0
            )
        ).scalar_one()
    )


# ---------- whose labels a user sees and saves ----------


def save_routed(
    session: Session,
    user: User,
    *,
    project: Project,
    image_id: int,
    expected_version: int,
    annotations: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """Save ``user``'s labels to their own set when the photo is routed (:func:`routed_kind`)
    and return the detail they see; None when the save is an ordinary one, for
    ``services.labelling.saves.save_annotations_as`` to do.

    Raises VersionConflict when ``expected_version`` is not the set's, AnnotationInvalid for
    a malformed annotation, Forbidden for a fake-damage flag by a role that may not set it.
    """
    require_member(session, user, project)
    image = readers.get_image(session, image_id, project)
    kind = routed_kind(session, user, image)
    if kind is None:
        return None
    validation.check_request(expected_version, annotations)
    taxonomy = project_taxonomy(project)
    incoming = [
        validation.normalise_annotation(a, taxonomy, i, image) for i, a in enumerate(annotations)
    ]
    if not user_service.can(user, Permission.fraud):
        for i, item in enumerate(incoming):
            if item["group"] == "fake" or (item["attributes"] or {}).get("fake"):
                raise Forbidden(f"annotation {i + 1}: only fraud analysts may flag fake damage")
    mine = own_set(session, user, image, kind)
    current = mine.version if mine is not None else 0
    if expected_version != current:
        raise VersionConflict(
            image.id, expected_version, current, list(mine.annotations) if mine else []
        )
    now = utcnow()
    old = {a["id"]: a for a in (mine.annotations if mine is not None else [])}
    next_id = max(old, default=0) + 1
    stored, created = [], []
    for index, item in enumerate(incoming):
        before = old.get(item["id"]) if item["id"] is not None else None
        if before is None:
            item_id, next_id = next_id, next_id + 1
            version = 1
            cid = annotations[index].get("client_id")
            cid = cid if isinstance(cid, int | str) and not isinstance(cid, bool) else None
            created.append({"index": index, "client_id": cid, "id": item_id})
        else:
            item_id = before["id"]
            same = all(before[k] == item[k] for k in ("class_id", "geometry", "attributes"))
            version = before["version"] if same else before["version"] + 1
        stored.append(
            {
                "id": item_id,
                "class_id": item["class_id"],
                "group": item["group"],
                "geometry": item["geometry"],
                "attributes": item["attributes"],
                "source": getattr(item["source"], "value", item["source"]),
                "author": user.username,
                "prediction_id": item["prediction_id"],
                "version": version,
                "updated_at": now.isoformat(),
            }
        )
    unchanged = mine is not None and [(a["id"], a["version"]) for a in mine.annotations] == [
        (a["id"], a["version"]) for a in stored
    ]
    if not unchanged:
        if mine is None:
            mine = AnnotationSet(
                image_id=image.id, project_id=project.id, user_id=user.id, kind=kind
            )
        mine.annotations = stored
        mine.version = current + 1
        mine.updated_at = now
        session.add(mine)
        session.flush()
    detail = detail_for(session, user, image, readers.image_detail(session, image))
    return {**detail, "created": created if not unchanged else []}


def submit_routed(
    session: Session,
    user: User,
    *,
    project: Project,
    image_id: int,
    status: ImageStatus | str,
) -> dict[str, Any] | None:
    """A routed user's status change (:func:`routed_kind`): ``labelled`` submits their own
    set (scoring it against gold, or completing an overlap photo once n sets are in); other
    statuses change nothing. Returns the summary the user sees, or None when the photo is not
    routed for them (an ordinary status change, for ``set_status_as``)."""
    require_member(session, user, project)
    image = readers.get_image(session, image_id, project)
    kind = routed_kind(session, user, image)
    if kind is None:
        return None
    statuses.check_status_permission(user, status)  # also refuses an unknown status
    if ImageStatus(status) == ImageStatus.labelled:
        mine = own_set(session, user, image, kind)
        if mine is None:  # "nothing to label here" is an answer too
            mine = AnnotationSet(
                image_id=image.id, project_id=project.id, user_id=user.id, kind=kind, version=1
            )
        mine.submitted_at = utcnow()
        if kind == GOLD_SUBMISSION:
            mine.scores = score_submission(session, project, image, mine)
        session.add(mine)
        session.flush()
        if kind == OVERLAP:
            complete_overlap(session, project, image)
    return detail_for(session, user, image, readers.image_detail(session, image))


def feedback_for(
    session: Session, user: User, *, project: Project, image_id: int
) -> dict[str, Any]:
    """The comparison of ``user``'s submitted labels of a gold photo with the gold labels,
    when the project shows it (``gold_feedback``). NotFound otherwise, so that asking does
    not reveal which photos are gold."""
    require_member(session, user, project)
    image = readers.get_image(session, image_id, project)
    mine = own_set(session, user, image, GOLD_SUBMISSION) if image.gold else None
    if (
        mine is None
        or mine.submitted_at is None
        or not project_quality_settings(project).gold_feedback
    ):
        raise NotFound(f"there is no feedback on image {image_id} for you")
    ref = gold_set(session, image)
    return {
        "image_id": image.id,
        "scores": mine.scores,
        "gold_annotations": list(ref.annotations) if ref else [],
        "your_annotations": list(mine.annotations),
    }


# ---------- gold ----------


def mark_gold(
    session: Session, user: User, *, project: Project, image_id: int, gold: bool = True
) -> Image:
    """A lead marks a reviewed photo as gold (its working set is frozen as the gold labels)
    or unmarks it (the frozen labels and the scores so far are kept)."""
    _require_lead(session, user, project)
    image = readers.get_image(session, image_id, project)
    if gold:
        if image.status != ImageStatus.reviewed:
            raise Invalid(
                f"image {image_id} is {image.status.value}; only reviewed photos can be gold: "
                "review it first"
            )
        ref = gold_set(session, image)
        if ref is None:
            ref = AnnotationSet(
                image_id=image.id, project_id=project.id, user_id=user.id, kind=GOLD
            )
        ref.annotations = readers.annotation_dicts(session, image.id)
        ref.version += 1
        ref.submitted_at = ref.updated_at = utcnow()
        session.add(ref)
    image.gold = gold
    session.add(image)
    session.flush()
    return image


def score_submission(
    session: Session, project: Project, image: Image, submission: AnnotationSet
) -> dict[str, Any]:
    ref = gold_set(session, image)
    if ref is None:
        raise NotFound(f"image {image.id} is marked gold but has no gold labels; mark it again")
    settings = project_quality_settings(project)
    result = gold_scoring.score(
        readers.dicts_to_instances(submission.annotations),
        readers.dicts_to_instances(ref.annotations),
        height=image.height,
        width=image.width,
        iou_threshold=settings.iou_threshold,
    )
    # JSON object keys are text; keep them so on both databases.
    return {
        "per_class": {str(c): v for c, v in result["per_class"].items()},
        "overall": result["overall"],
        "iou_threshold": settings.iou_threshold,
        "gold_version": ref.version,
    }


# ---------- overlap ----------


def complete_overlap(session: Session, project: Project, image: Image) -> PhotoAgreement | None:
    """Once ``overlap_target`` annotators submitted their sets: agreement, consensus as the
    working set (status labelled), and low agreement first in review. None before then."""
    rows = session.execute(
        select(AnnotationSet, User.username)
        .join(User, User.id == AnnotationSet.user_id)
        .where(
            AnnotationSet.image_id == image.id,
            AnnotationSet.kind == OVERLAP,
            AnnotationSet.submitted_at.is_not(None),
        )
    ).all()
    if len(rows) < image.overlap_target or session.get(PhotoAgreement, image.id) is not None:
        return None
    settings = project_quality_settings(project)
    sets = {name: readers.dicts_to_instances(s.annotations) for s, name in rows}
    pairs = agreement.pairwise_figures(
        sets, height=image.height, width=image.width, iou_threshold=settings.iou_threshold
    )
    per_class: dict[int, agreement.ClassFigures] = {}
    for p in pairs:
        for c, f in p.per_class.items():
            per_class.setdefault(c, agreement.ClassFigures()).add(f)
    summary = agreement.summarise(per_class)
    consensus = agreement.quorum_merge(
        [sets[n] for n in sorted(sets)],
        q=settings.quorum,
        height=image.height,
        width=image.width,
        iou_threshold=settings.iou_threshold,
    )
    saves.save_annotations(
        session,
        image_id=image.id,
        expected_version=image.annotation_version,
        annotations=[
            {
                "class_id": int(c),
                "geometry": shape.to_json(),
                "attributes": attrs,
                "source": "manual",
            }
            for shape, c, attrs in zip(
                consensus.shapes, consensus.class_ids, consensus.attributes, strict=True
            )
        ],
        author=CONSENSUS_AUTHOR,
        reason=f"consensus of {', '.join(sorted(sets))} (quorum {settings.quorum:g})",
    )
    statuses.set_status(
        session, image_id=image.id, status=ImageStatus.labelled, author=CONSENSUS_AUTHOR
    )
    session.refresh(image)
    f1 = float(summary["f1"])
    image.meta = {**(image.meta or {}), "agreement": f1}
    if f1 < settings.low_agreement:
        image.queue_score = REVIEW_FIRST_SCORE + (1.0 - f1)
    session.add(image)
    row = PhotoAgreement(
        image_id=image.id,
        project_id=project.id,
        f1=f1,
        mean_iou=summary["mean_iou"],
        label_disagreements=int(summary["label_disagreements"]),
        annotators=sorted(sets),
        per_class={str(c): f.as_dict() for c, f in sorted(per_class.items())},
        pairs=[
            {"a": p.a, "b": p.b, "per_class": {str(c): f.as_dict() for c, f in p.per_class.items()}}
            for p in pairs
        ],
    )
    session.add(row)
    session.flush()
    return row


# ---------- the queue ----------
