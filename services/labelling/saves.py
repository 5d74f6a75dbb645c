"""Saving an image's annotations, with optimistic locking and history.

A save replaces the image's whole annotation set at once (what the workspace autosaves).
It succeeds only if the caller saw the current ``Image.annotation_version``; the set as it
was before is kept as an ``AnnotationRevision``, and removed annotations are soft-deleted,
so no save can destroy earlier work. With ``keep_going`` (what the workspace sends) one bad
instance does not refuse the set: the others are saved and each refused one is reported with
its reason (:func:`save_annotation_set`), so no edit is dropped without a word.

Every save goes through :func:`save_annotation_set`: :func:`save_annotations` is its plain
form for imports, consensus and review, and :func:`save_annotations_as` is a user's save,
with the rules of who may change what (only fraud analysts may change the fake-damage verdict,
:mod:`services.labelling.fake_edits`; predictions follow the annotations made from them).

Projects are a boundary: the image is looked up within the project the server serves, so an
id of another project is NotFound, and :func:`save_annotations_as` checks membership too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlmodel import Session

from db.models import Annotation, AnnotationRevision, Image, ImageStatus, Project, User, utcnow
from services.accounts import users as user_service
from services.accounts.projects import project_taxonomy, require_member
from services.accounts.users import Permission
from services.errors import VersionConflict
from services.events import labels_changed
from services.labelling.fake_edits import check_fake_edits
from services.labelling.predictions import image_prediction_ids, sync_prediction_states
from services.labelling.readers import (
    annotation_dicts,
    annotation_to_dict,
    current_annotations,
    get_image,
    image_detail,
)
from services.labelling.validation import (
    AnnotationInvalid,
    check_request,
    check_shapes,
    check_sizes,
    normalise_annotation,
    repaired,
    whole_number,
)


@dataclass
class SaveOutcome:
    """What a save did: the new version, the instances it refused (``keep_going``) and the
    ids it gave the new ones."""

    version: int
    #: ``{"index", "client_id", "id", "reason"}`` per refused instance, in request order.
    rejected: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"index", "client_id", "id"}`` per annotation this save created, in request order.
    created: list[dict[str, Any]] = field(default_factory=list)


def save_annotations(
    session: Session,
    *,
    image_id: int,
    expected_version: int,
    annotations: list[dict[str, Any]],
    author: str | None,
    reason: str = "save",
    reopen_reviewed: bool = False,
) -> int:
    """Replace the image's annotation set; returns the new ``annotation_version``.

    A save that changes nothing writes nothing (no revision) and returns the version as it
    is. With ``reopen_reviewed`` (an author who may not review), a change to a ``reviewed``
    photo sends it back to ``labelled``, and its history says so.

    Raises VersionConflict when ``expected_version`` is stale, AnnotationInvalid when an
    annotation is malformed (nothing is written then).
    """
    return save_annotation_set(
        session,
        image_id=image_id,
        expected_version=expected_version,
        annotations=annotations,
        author=author,
        reason=reason,
        reopen_reviewed=reopen_reviewed,
    ).version


def save_annotation_set(
    session: Session,
    *,
    image_id: int,
    expected_version: int,
    annotations: list[dict[str, Any]],
    author: str | None,
    reason: str = "save",
    reopen_reviewed: bool = False,
    keep_going: bool = False,
) -> SaveOutcome:
    """:func:`save_annotations`, and with ``keep_going`` one bad instance does not refuse the
    rest: each instance that breaks a rule is left out and reported in
    :attr:`SaveOutcome.rejected` with the reason, the rest is saved in one write. A refused
    instance that was saved before keeps its stored version (it is not deleted); a refused
    new one is not created. Nothing is dropped without a word: the caller gets every refusal.
    An instance may carry ``client_id`` (any JSON scalar), echoed in the outcome.
    """
    image = get_image(session, image_id)
    check_request(expected_version, annotations)
    check_current(session, image, expected_version)
    taxonomy = project_taxonomy(session.get(Project, image.project_id))
    # Read once: a save that claims the version below is the only writer of these rows.
    rows = current_annotations(session, image_id)
    existing = {a.id: a for a in rows}
    predictions = image_prediction_ids(session, image_id, annotations)
    rejected: list[dict[str, Any]] = []
    incoming: list[dict[str, Any]] = []
    order: list[int] = []  # request index of each item of incoming
    for i, raw in enumerate(annotations):
        try:
            item = normalise_annotation(raw, taxonomy, i, image)
            if item["id"] is not None and item["id"] not in existing:
                raise AnnotationInvalid(
                    f"annotation id {item['id']} does not belong to image {image_id} "
                    "(or was deleted)"
                )
            if item["prediction_id"] is not None and item["prediction_id"] not in predictions:
                raise AnnotationInvalid(
                    f"annotation {i + 1}: prediction_id {item['prediction_id']} is not a "
                    f"prediction of image {image_id}; leave it out for a shape you drew yourself"
                )
        except AnnotationInvalid as e:
            if not keep_going:
                raise
            rejected.append(_rejection(raw, i, str(e), existing))
            continue
        incoming.append(item)
        order.append(i)
    # A refused instance that is stored stays as it is stored.
    refused_ids = {r["id"] for r in rejected if r["id"] is not None}
    kept_rows = [existing[i] for i in sorted(refused_ids)]
    if image.annotation_version == expected_version and _unchanged(
        [r for r in rows if r.id not in refused_ids], incoming
    ):
        return SaveOutcome(expected_version, rejected)
    reopen = reopen_reviewed and image.status == ImageStatus.reviewed
    if reopen:
        reason = f"{reason}; edited after review, so reviewed -> labelled"

    # Claim the version atomically: of two concurrent saves only one matches.
    claimed = session.execute(
        update(Image)
        .where(Image.id == image_id, Image.annotation_version == expected_version)
        .values(annotation_version=expected_version + 1, updated_at=utcnow())
    )
    if claimed.rowcount != 1:
        session.rollback()
        image = get_image(session, image_id)
        session.refresh(image)
        raise VersionConflict(
            image_id,
            expected_version,
            image.annotation_version,
            annotation_dicts(session, image_id),
        )

    session.add(
        AnnotationRevision(
            image_id=image_id,
            revision=expected_version,
            annotations=[annotation_to_dict(a) for a in existing.values()],
            author=author,
            reason=reason,
        )
    )
    now = utcnow()
    kept: set[int] = {r.id for r in kept_rows}
    created: list[tuple[int, Annotation]] = []
    for index, item in zip(order, incoming, strict=True):
        row = existing.get(item["id"]) if item["id"] is not None else None
        if row is None:
            new_row = Annotation(
                image_id=image_id,
                class_id=item["class_id"],
                group=item["group"],
                geometry=item["geometry"],
                attributes=item["attributes"],
                source=item["source"],
                author=author,
                prediction_id=item["prediction_id"],
            )
            session.add(new_row)
            created.append((index, new_row))
            continue
        kept.add(row.id)
        if not _same(row, item):
            row.class_id, row.group = item["class_id"], item["group"]
            row.geometry, row.attributes = item["geometry"], item["attributes"]
            row.version += 1
            row.updated_at = now
            row.author = author
            # A changed instance is new work: a reviewer's verdict on the old one no longer holds.
            row.review_state = row.review_reason = row.reviewed_by = None
            session.add(row)
    for row_id, row in existing.items():
        if row_id not in kept:
            row.deleted = True
            row.version += 1
            row.updated_at = now
            session.add(row)
    session.refresh(image)
    if image.status == ImageStatus.new:
        image.status = ImageStatus.in_progress
        session.add(image)
    elif reopen:
        image.status = ImageStatus.labelled
        image.meta = {**(image.meta or {}), "status_by": author}
        session.add(image)
    session.flush()
    return SaveOutcome(
        expected_version + 1,
        rejected,
        [{"index": i, "client_id": _client_id(annotations[i]), "id": r.id} for i, r in created],
    )


def check_current(session: Session, image: Image, expected_version: int) -> None:
    """Raise VersionConflict, with the current version and annotations, when ``image`` has been
    saved since the caller read ``expected_version``. Checked before the annotations are, so a
    stale save is a conflict whatever it holds (an id deleted since, a verdict changed since);
    the atomic claim in :func:`save_annotation_set` still settles two saves at the same moment.
    """
    if image.annotation_version != expected_version:
        raise VersionConflict(
            image.id,
            expected_version,
            image.annotation_version,
            annotation_dicts(session, image.id),
        )


def _client_id(raw: object) -> Any:
    """The caller's own name for an instance, echoed back; only a short scalar."""
    cid = raw.get("client_id") if isinstance(raw, dict) else None
    if isinstance(cid, bool) or not isinstance(cid, int | str) or len(str(cid)) > 100:
        return None
    return cid


def _rejection(
    raw: object, index: int, reason: str, existing: dict[int, Annotation]
) -> dict[str, Any]:
    ann_id = raw.get("id") if isinstance(raw, dict) else None
    stored = ann_id if isinstance(ann_id, int) and ann_id in existing else None
    return {"index": index, "client_id": _client_id(raw), "id": stored, "reason": reason}


def _same(row: Annotation, item: dict[str, Any]) -> bool:
    return (
        row.class_id == item["class_id"]
        and row.geometry == item["geometry"]
        and (row.attributes or {}) == item["attributes"]
    )


def _unchanged(rows: list[Annotation], incoming: list[dict[str, Any]]) -> bool:
    """True when saving ``incoming`` over ``rows`` would change nothing."""
    by_id = {r.id: r for r in rows}
    return len(rows) == len(incoming) and all(
        item["id"] in by_id and _same(by_id[item["id"]], item) for item in incoming
    )


def save_annotations_as(
    session: Session,
    user: User,
    *,
    project: Project,
    image_id: int,
    expected_version: int,
    annotations: list[dict[str, Any]],
    keep_going: bool = False,
) -> dict[str, Any]:
    """``user``'s save of the image's whole annotation set; returns :func:`image_detail` after it,
    plus ``rejected`` and ``created`` (:class:`SaveOutcome`).

    An outline that crosses itself, new or changed in this save, is split where it crosses
    (:func:`core.geometry.repair_geometry`, which the canvas applies too): a bow-tie becomes
    two parts rather than a zero or wrong area. With ``keep_going`` an instance that breaks a
    rule is refused alone and reported, and the rest is saved (:func:`save_annotation_set`).

    Raises NotFound for an image of another ``project``, Forbidden when the user is not a
    member of it; then VersionConflict when ``expected_version`` is stale (before any rule about
    the annotations, :func:`check_current`); then Forbidden when the user changes a fake-damage
    verdict they may not (``services.labelling.fake_edits``), Invalid for a malformed
    annotation (without ``keep_going``). Nothing is written when it raises.
    """
    require_member(session, user, project)
    image = get_image(session, image_id, project)
    whole_number(expected_version, "version")
    check_current(session, image, expected_version)
    check_sizes(annotations)  # before the costly steps: an oversized set is refused at once
    if not keep_going:
        check_shapes(annotations)
    before = annotation_dicts(session, image_id)
    check_fake_edits(session, image_id, annotations, user, stored=before)
    annotations = repaired(annotations, {a["id"]: a["geometry"] for a in before})
    outcome = save_annotation_set(
        session,
        image_id=image_id,
        expected_version=expected_version,
        annotations=annotations,
        author=user.username,
        reopen_reviewed=not user_service.can(user, Permission.review),
        keep_going=keep_going,
    )
    after = annotation_dicts(session, image_id)
    sync_prediction_states(session, image_id, after)
    labels_changed(session, project.id)  # auto-training checks run on commit (jobs.autotrain)
    image = get_image(session, image_id)
    session.refresh(image)
    return {
        **image_detail(session, image, after),
        "version": outcome.version,
        "rejected": outcome.rejected,
        "created": outcome.created,
    }
