"""Review at a glance: verdicts on single instances, rejections waiting for their author, the
per-annotator rejection rates, and the side-less imports a lead still has to resolve.

A reviewer may accept or reject one instance of a photo, not only the whole photo. Rejecting
an instance needs a reason and rejects the photo too (unless it already is), with a comment
that lists every rejected instance and its reason, so the photo goes back to its author
(:mod:`services.labelling.rejections`) with the places to fix. The photo cannot be approved while an
instance stays rejected; the author changing an instance clears its verdict
(``services.labelling.saves.save_annotations``).

Every verdict, on a photo or an instance, is logged (``ReviewDecision``); the rates count
them per annotator.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from sqlmodel import Session, select

from db.models import Annotation, Image, ImageStatus, Project, ReviewDecision, User, utcnow
from services.accounts import users as user_service
from services.accounts.projects import project_taxonomy, require_member
from services.accounts.users import Permission
from services.errors import Forbidden, Invalid, NotFound, check_comment_length
from services.labelling import rejections
from services.labelling.readers import annotation_to_dict, get_image, image_summary
from services.labelling.saves import save_annotations
from services.labelling.statuses import set_status

Decision = Literal["accepted", "rejected"]
DECISIONS: tuple[str, ...] = ("accepted", "rejected")
#: The attribute a side-less source label (a mirror, a door) is imported with, on a sided class.
SIDE_ATTRIBUTE = "side"
SIDE_UNKNOWN = "unknown"


def _live_annotation(session: Session, image: Image, annotation_id: int) -> Annotation:
    ann = session.get(Annotation, annotation_id)
    if ann is None or ann.image_id != image.id or ann.deleted:
        raise NotFound(
            f"annotation {annotation_id} is not on photo {image.id} (or was deleted); "
            "reload the photo"
        )
    return ann


def _rejection_comment(session: Session, image: Image) -> str:
    taxonomy = project_taxonomy(session.get(Project, image.project_id))
    parts = []
    for a in rejections.rejected_instances(session, image.id):
        name = taxonomy.by_id(a.class_id).display_name if a.class_id in taxonomy else a.class_id
        parts.append(f"{name}: {a.review_reason}")
    return "; ".join(parts)


def review_instance_as(
    session: Session,
    user: User,
    *,
    project: Project,
    image_id: int,
    annotation_id: int,
    decision: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """``user``'s verdict on one instance; returns ``{"annotation", "image"}`` after it.

    Forbidden unless the user may review and is a member of ``project``; NotFound for an
    image of another project or an annotation not on it; Invalid for an unknown decision or
    a rejection without a reason.
    """
    require_member(session, user, project)
    if not user_service.can(user, Permission.review):
        raise Forbidden(f"Your role ({user.role.value}) may not review instances.")
    if decision not in DECISIONS:
        raise Invalid(f"decision {decision!r} must be one of {', '.join(DECISIONS)}")
    reason = (reason or "").strip() or None
    check_comment_length(reason, "reason")
    if decision == "rejected" and reason is None:
        raise Invalid("rejecting an instance needs a reason that tells the annotator what to fix")
    image = get_image(session, image_id, project)
    ann = _live_annotation(session, image, annotation_id)
    ann.review_state, ann.review_reason, ann.reviewed_by = decision, reason, user.username
    session.add(ann)
    rejections.record(
        session,
        image,
        reviewer=user.username,
        decision=decision,
        author=ann.author if ann.author != user.username else None,
        reason=reason,
        annotation_id=ann.id,
    )
    session.flush()
    if decision == "rejected":
        comment = _rejection_comment(session, image)
        if image.status != ImageStatus.rejected:
            set_status(
                session,
                image_id=image.id,
                status=ImageStatus.rejected,
                author=user.username,
                comment=comment,
            )
        else:
            image.review_comment = comment
            image.updated_at = utcnow()
            session.add(image)
    session.flush()
    session.refresh(image)
    return {"annotation": annotation_to_dict(ann), "image": image_summary(image)}


def waiting_for(session: Session, user: User, project: Project) -> dict[str, Any]:
    """The rejected photos of ``project`` that wait for ``user``: a count and their summaries
    (with the reviewer's comment), oldest rejection first."""
    require_member(session, user, project)
    ids = rejections.waiting_ids(session, project.id, user.username)
    images = [get_image(session, i) for i in ids]
    return {"count": len(ids), "images": [image_summary(im) for im in images]}


def rejection_rates(session: Session, project: Project) -> list[dict[str, Any]]:
    """Per annotator: verdicts on their photos and instances, and the share rejected.

    Rows ``{"annotator", "photos_reviewed", "photos_rejected", "photo_rejection_rate",
    "instances_reviewed", "instances_rejected", "instance_rejection_rate"}``, highest
    photo rejection rate first; a rate is None when nothing of that kind was reviewed. Every
    verdict counts, so a photo rejected once and approved after its fix counts one of each.
    """
    rows = session.exec(
        select(ReviewDecision.author, ReviewDecision.annotation_id, ReviewDecision.decision).where(
            ReviewDecision.project_id == project.id, ReviewDecision.author.is_not(None)
        )
    ).all()
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for author, annotation_id, decision in rows:
        kind = "photos" if annotation_id is None else "instances"
        counts[author][f"{kind}_reviewed"] += 1
        if decision == "rejected":
            counts[author][f"{kind}_rejected"] += 1

    def rate(c: dict[str, int], kind: str) -> float | None:
        n = c[f"{kind}_reviewed"]
        return round(c[f"{kind}_rejected"] / n, 4) if n else None

    out = [
        {
            "annotator": author,
            "photos_reviewed": c["photos_reviewed"],
            "photos_rejected": c["photos_rejected"],
            "photo_rejection_rate": rate(c, "photos"),
            "instances_reviewed": c["instances_reviewed"],
            "instances_rejected": c["instances_rejected"],
            "instance_rejection_rate": rate(c, "instances"),
        }
        for author, c in counts.items()
    ]
    out.sort(key=lambda r: (-(r["photo_rejection_rate"] or 0.0), r["annotator"]))
    return out


# ---------- side-less imports ----------


def side_unknown(session: Session, project: Project) -> list[dict[str, Any]]:
    """The project's live annotations imported from a side-less label (attribute
    ``side: unknown``), with their photo: ``{"annotation", "image", "class_name",
    "other_side"}`` (``other_side`` the mirrored class's name, what "the other side" means)."""
    taxonomy = project_taxonomy(project)
    rows = session.exec(
        select(Annotation, Image)
        .join(Image, Image.id == Annotation.image_id)
        .where(Image.project_id == project.id, Annotation.deleted == False)  # noqa: E712
        .order_by(Image.id, Annotation.id)
    ).all()
    out = []
    for ann, image in rows:
        if (ann.attributes or {}).get(SIDE_ATTRIBUTE) != SIDE_UNKNOWN:
            continue
        other = taxonomy.mirror_id(ann.class_id) if ann.class_id in taxonomy else ann.class_id
        out.append(
            {
                "annotation": annotation_to_dict(ann),
                "image": image_summary(image),
                "class_name": taxonomy.by_id(ann.class_id).name
                if ann.class_id in taxonomy
                else str(ann.class_id),
                "other_side": taxonomy.by_id(other).name if other in taxonomy else None,
            }
        )
    return out


def resolve_side_as(
    session: Session,
    user: User,
    *,
    project: Project,
    annotation_id: int,
    class_name: str,
) -> dict[str, Any]:
    """A lead's answer for one side-less instance: its class becomes ``class_name`` (the
    imported side or its mirror) and the ``side: unknown`` attribute goes. The photo's
    annotation version is bumped and the set before is kept in its history, as a save does."""
    require_member(session, user, project)
    if not user_service.can(user, Permission.dashboard):
        raise Forbidden(f"Your role ({user.role.value}) may not resolve sides; a lead does.")
    ann = session.get(Annotation, annotation_id)
    image = get_image(session, ann.image_id, project) if ann is not None else None
    if ann is None or image is None or ann.deleted:
        raise NotFound(f"annotation {annotation_id} does not exist in project {project.name!r}")
    if (ann.attributes or {}).get(SIDE_ATTRIBUTE) != SIDE_UNKNOWN:
        raise Invalid(f"annotation {annotation_id} has no unknown side to resolve")
    taxonomy = project_taxonomy(project)
    allowed = {taxonomy.by_id(c).name for c in (ann.class_id, taxonomy.mirror_id(ann.class_id))}
    if class_name not in allowed:
        raise Invalid(f"class {class_name!r} must be one of {', '.join(sorted(allowed))}")
    items = []
    for a in session.exec(
        select(Annotation)
        .where(Annotation.image_id == image.id, Annotation.deleted == False)  # noqa: E712
        .order_by(Annotation.id)
    ).all():
        item = annotation_to_dict(a)
        if a.id == ann.id:
            item["class_id"] = taxonomy.by_name(class_name).id
            item["attributes"] = {
                k: v for k, v in (a.attributes or {}).items() if k != SIDE_ATTRIBUTE
            }
        items.append(item)
    save_annotations(
        session,
        image_id=image.id,
        expected_version=image.annotation_version,
        annotations=items,
        author=user.username,
        reason=f"side resolved: annotation {annotation_id} is {class_name}",
    )
    session.refresh(ann)
    return annotation_to_dict(ann)


def rejection_rates_markdown(session: Session, project: Project) -> str:
    """:func:`rejection_rates` as a Markdown table for the dashboard (a line when empty)."""
    rows = rejection_rates(session, project)
    if not rows:
        return "**Rejection rates:** no review verdicts yet."

    def pct(rate: float | None) -> str:
        return "–" if rate is None else f"{100 * rate:.0f}%"

    lines = [
        "**Rejection rates per annotator** (every verdict counts)",
        "",
        "| annotator | photos reviewed | rejected | rate | instances reviewed | rejected | rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = str(r["annotator"]).replace("|", "\\|")
        lines.append(
            f"| {name} | {r['photos_reviewed']} | {r['photos_rejected']} | "
            f"{pct(r['photo_rejection_rate'])} | {r['instances_reviewed']} | "
            f"{r['instances_rejected']} | {pct(r['instance_rejection_rate'])} |"
        )
    return "\n".join(lines)
