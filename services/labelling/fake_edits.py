"""Who may change the fake-damage verdict: only fraud analysts (and leads and admins) may flag
fake damage, or remove or change a flagged instance; others may still refine its outline."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from core.taxonomy import Taxonomy
from db.models import Project, User
from services.accounts import users as user_service
from services.accounts.projects import project_taxonomy
from services.accounts.users import Permission
from services.errors import Forbidden
from services.labelling.readers import annotation_dicts, get_image


def _verdict(attrs: object) -> tuple[bool, str]:
    attrs = attrs if isinstance(attrs, dict) else {}
    return bool(attrs.get("fake")), str(attrs.get("fake_note") or "")


def _flagged(item: dict[str, Any]) -> bool:
    """A fake-damage flag: the verdict attribute, or a class of the fake group."""
    return _verdict(item.get("attributes"))[0] or item.get("group") == "fake"


def check_fake_edits(
    session: Session,
    image_id: int,
    incoming: list[dict[str, Any]],
    user: User,
    stored: list[dict[str, Any]] | None = None,
) -> None:
    """Raise Forbidden when ``user`` may not make the fake-damage changes in ``incoming``.

    Only fraud analysts (and leads/admins) may flag fake damage, or remove or change a flagged
    instance: its verdict, its note, its class. Others may still refine a flagged polygon's
    outline. Deleting a flagged annotation and adding it again unflagged in the same save, or
    relabelling a fake-damage class as damage, is removing the flag and needs the same role.
    ``stored``: the image's current annotations as ``annotation_dicts`` gives them, when the
    caller has read them already.
    """
    if user_service.can(user, Permission.fraud):
        return
    stored = annotation_dicts(session, image_id) if stored is None else stored
    old = {a["id"]: a for a in stored}
    taxonomy = project_taxonomy(session.get(Project, get_image(session, image_id).project_id))
    kept = set()
    for i, a in enumerate(incoming):
        if not isinstance(a, dict):
            continue
        before = old.get(a.get("id"))
        kept.add(a.get("id"))
        group = _class_group(a, taxonomy)
        if before is None:
            if _flagged({**a, "group": group}):
                raise Forbidden(
                    f"annotation {i + 1}: only fraud analysts may flag fake damage (the fake "
                    "flag, a note, or a fake-damage class)"
                )
            continue
        if _verdict(a.get("attributes")) != _verdict(before["attributes"]):
            raise Forbidden(
                f"annotation {i + 1}: only fraud analysts may set or clear the fake-damage "
                "flag and note"
            )
        if _flagged(before) and _class_id(a, taxonomy) != before["class_id"]:
            raise Forbidden(
                f"annotation {i + 1} is flagged as fake damage; only fraud analysts may change "
                "its class"
            )
    for ann_id, before in old.items():
        if ann_id not in kept and _flagged(before):
            raise Forbidden(
                f"annotation {ann_id} is flagged as fake damage; only fraud analysts may delete it"
            )


def _class_id(raw: dict[str, Any], taxonomy: Taxonomy) -> int | None:
    if raw.get("class_id") is not None:
        return raw["class_id"] if isinstance(raw["class_id"], int) else None
    cls = taxonomy.get(str(raw.get("class_name")))
    return cls.id if cls else None


def _class_group(raw: dict[str, Any], taxonomy: Taxonomy) -> str | None:
    class_id = _class_id(raw, taxonomy)
    if class_id is None or isinstance(class_id, bool) or class_id not in taxonomy:
        return None
    return taxonomy.by_id(class_id).group
