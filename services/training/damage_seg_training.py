"""A damage pre-annotator that trains itself on a CPU: once a project with no promoted
``damage_seg`` holds enough labelled photos with damage, a background job trains
``damage_seg`` for a time budget and promotes it only when it beats the current damage model
(the promoted ``damage_seg``, else the strongest promoted ALBERT or Mask R-CNN) on held-out
damage mask AP50; a winner then pre-annotates the project's photos in the same job, each
damage saying which part it sits on when a part model is promoted. A loser is not kept.

Its :data:`POLICY` (``services.training.autotrain``) queues the job once the project holds
``damage_seg_autotrain_min_photos`` labelled photos with damage (status ``labelled`` or
``reviewed``, at least one damage polygon; held-out ones included) and no damage_seg is
promoted, then again only after ``damage_seg_autotrain_growth``. A project whose labels hold
no damage gets a sentence on the dashboard (:func:`autotrain_summary`), never a job.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from core.config import env_name, get_settings
from db.models import LABELLED_STATUSES, Annotation, Image, Project
from services.training.autotrain import labelled_photos_with, promoted_line, segmenter_policy
from services.training.lifecycle import ProgressFor
from services.training.segmenter_jobs import default_preset, train_and_preannotate

JOB_KIND = "damage_seg_autotrain"
STAGE = "damage_seg"
TITLE = "Damage pre-annotator (damage_seg)"
#: the taxonomy groups it learns; "photos with damage" count the first
GROUPS = ("damage", "fake")


# ---------- the trigger ----------


def labelled_classes(session: Session, project: Project) -> set[int]:
    """Class ids of the damage and fake-damage polygons on ``project``'s labelled photos."""
    return set(
        session.exec(
            select(Annotation.class_id)
            .join(Image, Annotation.image_id == Image.id)
            .where(
                Image.project_id == project.id,
                Image.status.in_(LABELLED_STATUSES),
                Annotation.group.in_(GROUPS),
                Annotation.deleted == False,  # noqa: E712
            )
            .distinct()
        ).all()
    )


#: Trains once the project holds ``damage_seg_autotrain_min_photos`` labelled photos with
#: damage and has no promoted damage_seg (once one is, rounds carry it on, warm-started).
POLICY = segmenter_policy(STAGE, JOB_KIND, labelled_photos_with("damage"))

#: ``project``'s labelled or reviewed photos holding at least one damage polygon: one COUNT
labelled_photos_with_damage = POLICY.count


def cannot_predict(names: list[str]) -> str:
    """``"; cannot predict yet (no labels): dent, rust and any fake damage"`` for the class
    names ``names`` (all fake-damage classes in one phrase); empty when there are none."""
    from core.taxonomy import default_taxonomy

    if not names:
        return ""
    tax = default_taxonomy()
    fakes = {c.name for c in tax.group("fake")}
    damage = [n for n in names if n not in fakes]
    missing_fakes = [n for n in names if n in fakes]
    parts = list(damage)
    if missing_fakes and set(missing_fakes) >= fakes:
        parts.append("any fake damage")
    else:
        parts += missing_fakes
    text = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return f"; cannot predict yet (no labels): {text}"


def autotrain_summary(session: Session, project: Project) -> str:
    """One line for the dashboard: where the project's damage pre-annotator stands, and which
    classes it cannot predict yet."""
    from services.accounts.projects import project_taxonomy

    settings = get_settings()
    promoted = promoted_line(session, STAGE, TITLE)
    if promoted is not None:
        line, mv = promoted
        return line + cannot_predict(list((mv.metrics or {}).get("unpredicted_classes") or []))
    if not settings.damage_seg_autotrain:
        return f"{TITLE} auto-training: off ({env_name('damage_seg_autotrain')})"
    n = labelled_photos_with_damage(session, project)
    if n == 0:
        return (
            f"{TITLE}: this project's labels hold no damage yet, so there is nothing to train "
            f"it on; it trains itself once {POLICY.minimum(settings)} labelled photos show damage"
        )
    minutes = settings.damage_seg_time_budget_s / 60
    counted = f"{n} labelled photos with damage"
    line = POLICY.waiting_line(session, project, TITLE, counted, minutes)
    seen = labelled_classes(session, project)
    tax = project_taxonomy(project)
    missing = [c.name for g in GROUPS for c in tax.group(g) if c.id not in seen]
    return line + cannot_predict(missing)


# ---------- the job ----------


def train_and_compare(
    session: Session,
    project: Project,
    *,
    config: str | None = None,
    time_budget_s: float | None = None,
    epochs: int | None = None,
    device: str | None = None,
    progress_for: ProgressFor | None = None,
) -> dict[str, Any]:
    """Train damage_seg on ``project``'s labelled, not held-out photos for
    ``damage_seg_time_budget_s``; promote it when its held-out damage mask AP50 beats the
    current damage model's (or when there is none, and it clears its bar), then pre-annotate
    the project's photos with it in this call. A loser is not kept.

    Returns :func:`services.training.segmenter_jobs.train_and_preannotate`'s dict. Raises
    Invalid when there is nothing to train on or to measure."""
    settings = get_settings()
    device = device or settings.device
    return train_and_preannotate(
        session,
        project,
        POLICY,
        config=config or settings.damage_seg_autotrain_config or default_preset(device),
        time_budget_s=time_budget_s or settings.damage_seg_time_budget_s,
        epochs=epochs,
        device=device,
        progress_for=progress_for,
    )
