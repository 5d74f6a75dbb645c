"""Queue leases: the queue hands each photo to one person at a time.

``/api/queue/next`` (and ``previous``) lease the photo they return to the user who asked:
nobody else is handed it until the lease ends. A lease lives on the image row
(``lease_user_id``, ``lease_since``, ``lease_until``, Unix seconds) and lasts
``Settings.lease_ttl_seconds``; a save renews it. It ends when its holder takes another photo
(save-and-next, skip), signs out, or a lead releases it, or when it runs out: an expired lease
is simply free, so nothing has to sweep them.

Two people asking at the same instant get two different photos:

- SQLite serialises writers, so the hand-out reads which candidates are free, then takes the
  first with a conditional UPDATE whose WHERE checks again that it is free, ``RETURNING`` the
  photo it took (or nothing, when another took it in between: then it tries the next);
- PostgreSQL takes the first free candidate with ``SELECT ... FOR UPDATE SKIP LOCKED``, so
  concurrent hand-outs pass over the row another is taking, then UPDATEs it.

Either way the transaction is committed at once, so the write lock (SQLite) or the row lock
(PostgreSQL) is held for milliseconds, not for the rest of the request.

Extending the hand-out (overlap and gold photos): ``may_have`` is the one filter of "which
photos may this user be handed" (``services.labelling.routing.candidate_filter`` extends the lease rule
``lease_free``); ``candidates`` is the order they are offered in. Both are applied inside the
locked statement, so whatever they add is as race-free as the lease. Opening a photo by id
and saving it (``take``) use the lease rule alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, case, or_, select, update
from sqlmodel import Session

from core.config import get_settings
from db.models import Image, User
from services.accounts import users as user_service
from services.errors import NotFound
from services.labelling import images as image_service
from services.labelling import rejections, routing
from services.labelling.readers import image_detail

Direction = Literal["next", "previous"]


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def live(now: float) -> ColumnElement[bool]:
    """Photos someone holds a lease on at ``now``."""
    return and_(Image.lease_user_id.is_not(None), Image.lease_until > now)


def lease_free(user: User, now: float) -> ColumnElement[bool]:
    """The lease rule alone: photos nobody holds at ``now``, held by ``user``, or expired."""
    return or_(
        Image.lease_user_id.is_(None), Image.lease_user_id == user.id, Image.lease_until <= now
    )


def may_have(user: User, now: float) -> ColumnElement[bool]:
    """The photos the queue may hand ``user`` at ``now``: the lease rule, as the quality
    checks extend it (``services.labelling.routing.candidate_filter``: overlap and gold photos).

    This is the one place that says who may be handed a photo; the hand-out checks it again
    inside the locked UPDATE, so an extension cannot reintroduce a race.
    """
    return routing.candidate_filter(user, lease_free(user, now))


def candidates(ids: Sequence[int], direction: Direction, after_id: int | None) -> list[int]:
    """The photos to offer, best first: those after ``after_id`` in queue order ``ids`` (or
    before it, going back); the whole queue when ``after_id`` is not in it."""
    ids = list(ids)
    pos = ids.index(after_id) if after_id is not None and after_id in ids else None
    if direction == "next":
        return ids if pos is None else ids[pos + 1 :]
    return ids[::-1] if pos is None else ids[:pos][::-1]


def in_queue(project_id: int, **filters: Any) -> ColumnElement[bool]:
    """The queue's filters (open photos unless ``status`` says otherwise) as one condition.
    The hand-out checks it again under the lock: a photo marked labelled since the queue was
    read has left the queue, and is not handed out even once its lease is released."""
    status = filters.pop("status", None) or ",".join(s.value for s in image_service.OPEN_STATUSES)
    return image_service.filtered_query(project_id, status=status, **filters).whereclause


def _first(chunk: list[int], user: User, now: float, still: ColumnElement[bool]):
    """A SELECT of the first photo of ``chunk`` (in ``chunk``'s order) that ``user`` may have
    and that ``still`` holds for."""
    rank = case({image_id: k for k, image_id in enumerate(chunk)}, value=Image.id)
    where = (Image.id.in_(chunk), still, may_have(user, now))
    return select(Image.id).where(*where).order_by(rank).limit(1)


def _lease_values(user: User, now: float) -> dict[str, Any]:
    keep_since = and_(Image.lease_user_id == user.id, Image.lease_until > now)
    return {
        "lease_user_id": user.id,
        # Renewing one's own live lease keeps its start: the lead sees since when it is held.
        "lease_since": case((keep_since, Image.lease_since), else_=now),
        "lease_until": now + get_settings().lease_ttl_seconds,
    }


def _release_mine(
    session: Session, project_id: int, user: User, keep: Collection[int] = ()
) -> set[int]:
    """End the user's leases in the project but those of ``keep``; the photos released."""
    stmt = update(Image).where(Image.project_id == project_id, Image.lease_user_id == user.id)
    if keep:
        stmt = stmt.where(Image.id.not_in(list(keep)))
    rows = session.execute(
        stmt.values(lease_user_id=None, lease_since=None, lease_until=None).returning(Image.id),
        execution_options={"synchronize_session": False},
    ).scalars()
    return set(rows)


def hold_kept(
    session: Session, project_id: int, user: User, kept: Collection[int], now: float
) -> set[int]:
    """Lease to ``user`` (or renew) the photos of ``kept`` that nobody else holds: photos whose
    edits the user's browser kept unsaved (a closed tab), held while the workspace offers them
    back, so that nobody else is handed them meanwhile. The ids held now."""
    if not kept:
        return set()
    rows = session.execute(
        update(Image)
        .where(Image.project_id == project_id, Image.id.in_(list(kept)), lease_free(user, now))
        .values(**_lease_values(user, now))
        .returning(Image.id),
        execution_options={"synchronize_session": False},
    ).scalars()
    return set(rows)


def _take_first(
    session: Session, chunk: list[int], user: User, now: float, still: ColumnElement[bool]
) -> int | None:
    values = _lease_values(user, now)
    opts = {"synchronize_session": False}
    if session.get_bind().dialect.name == "postgresql":
        got = session.execute(
            _first(chunk, user, now, still).with_for_update(skip_locked=True, of=Image)
        ).scalar()
        if got is not None:
            session.execute(
                update(Image).where(Image.id == got).values(**values), execution_options=opts
            )
        return got
    # SQLite: read which photos of the chunk may be had, then take the first of them with a
    # conditional UPDATE that checks the same rule again under the write lock (SQLite lets
    # one writer in at a time); if another took it in between, try the next one.
    allowed = may_have(user, now)
    free = set(
        session.execute(select(Image.id).where(Image.id.in_(chunk), still, allowed)).scalars()
    )
    for image_id in (i for i in chunk if i in free):
        stmt = (
            update(Image)
            .where(Image.id == image_id, still, allowed)
            .values(**values)
            .returning(Image.id)
        )
        got = session.execute(stmt, execution_options=opts).scalar()
        if got is not None:
            return got
    return None


def _scan(offered: list[int], pick: Callable[[list[int]], int | None]) -> int | None:
    """``pick`` over ``offered``, ``lease_scan_batch`` photos at a time; the first photo it
    returns, or None."""
    batch = get_settings().lease_scan_batch
    for start in range(0, len(offered), batch):
        got = pick(offered[start : start + batch])
        if got is not None:
            return got
    return None


def hand_out(
    session: Session,
    project_id: int,
    user: User,
    ids: Sequence[int],
    *,
    still: ColumnElement[bool],
    direction: Direction = "next",
    after_id: int | None = None,
    kept: Collection[int] = (),
    now: float | None = None,
) -> Image | None:
    """Lease to ``user`` the first photo of the queue ``ids`` after (or before) ``after_id``
    that nobody else holds and that is ``still`` in the queue (``in_queue``), release the
    user's other leases in the project, and commit. None when no photo is left that way; the
    user then keeps ``after_id`` if they held it, since they stay on it. The photos of ``kept``
    (:func:`hold_kept`) stay leased to the user too."""
    now = _now(now)
    offered = candidates(ids, direction, after_id)
    since = None
    if after_id is not None:
        since = session.execute(
            select(Image.lease_since).where(Image.id == after_id, Image.lease_user_id == user.id)
        ).scalar()
    held = hold_kept(session, project_id, user, kept, now)
    released = _release_mine(session, project_id, user, keep=held)
    got = _scan(offered, lambda chunk: _take_first(session, chunk, user, now, still))
    if got is None and after_id in released:
        # Nobody can have taken it meanwhile: SQLite's write lock, or the row lock the release
        # holds on PostgreSQL (others SKIP it), lasts until the commit below.
        session.execute(
            update(Image)
            .where(Image.id == after_id, Image.lease_user_id.is_(None))
            .values(
                lease_user_id=user.id,
                lease_since=since if since is not None else now,
                lease_until=now + get_settings().lease_ttl_seconds,
            ),
            execution_options={"synchronize_session": False},
        )
    session.commit()
    return session.get(Image, got, populate_existing=True) if got is not None else None


def peek(
    session: Session,
    user: User,
    ids: Sequence[int],
    *,
    still: ColumnElement[bool],
    direction: Direction = "next",
    after_id: int | None = None,
    now: float | None = None,
) -> Image | None:
    """The photo ``hand_out`` would give now, without leasing it (for prefetching)."""
    now = _now(now)
    offered = candidates(ids, direction, after_id)
    got = _scan(offered, lambda chunk: session.execute(_first(chunk, user, now, still)).scalar())
    return session.get(Image, got) if got is not None else None


def take(
    session: Session,
    image: Image,
    user: User,
    *,
    kept: Collection[int] = (),
    now: float | None = None,
    lazily: bool = False,
) -> bool:
    """Lease ``image`` to ``user`` if nobody else holds it (or renew the user's own lease), and
    then release the user's other leases in the project but those of ``kept``
    (:func:`hold_kept`); whether the user holds it now. Opening a photo by id and saving it both
    call this: activity renews the lease. Looking at a photo someone else holds leaves the
    user's own lease alone.

    ``lazily`` (a save): nothing is written while the user holds the lease for more than half
    its time still and keeps no other photos, so saving every few seconds writes the lease
    once per half-lease, not on every save."""
    now = _now(now)
    half = get_settings().lease_ttl_seconds / 2
    if lazily and not kept and image.lease_user_id == user.id:
        if (image.lease_until or 0.0) - now > half:
            return True
    # The lease rule alone: opening a photo by id is not the queue choosing one.
    got = session.execute(
        update(Image)
        .where(Image.id == image.id, lease_free(user, now))
        .values(**_lease_values(user, now)),
        execution_options={"synchronize_session": False},
    ).rowcount
    if got:
        held = hold_kept(session, image.project_id, user, kept, now)
        _release_mine(session, image.project_id, user, keep=held | {image.id})
    session.commit()
    session.refresh(image)
    return bool(got)


def holder(session: Session, image: Image, *, now: float | None = None) -> str | None:
    """The name of the user holding a live lease on ``image``, else None."""
    if image.lease_user_id is None or (image.lease_until or 0.0) <= _now(now):
        return None
    user = session.get(User, image.lease_user_id)
    return user.username if user is not None else None


def open_by_id(
    session: Session,
    image: Image,
    user: User,
    *,
    kept: Collection[int] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """Open ``image`` for ``user``: leased to them when free; read-only, with the holder's
    name, while someone else holds it. The fields the image payload carries."""
    now = _now(now)
    if take(session, image, user, kept=kept, now=now):
        return {"read_only": False, "held_by": None}
    held_by = holder(session, image, now=now)
    return {"read_only": held_by is not None, "held_by": held_by}


def queue_step(
    session: Session,
    project_id: int,
    user: User,
    direction: Direction,
    *,
    after_id: int | None = None,
    lease: bool = True,
    kept: Collection[int] = (),
    now: float | None = None,
    **filters: Any,
) -> dict[str, Any]:
    """``services.labelling.images.queue_step`` with leases: the photo after (or before) ``after_id`` that
    nobody else holds, leased to ``user`` (only looked at when ``lease`` is False), with its
    detail, its place in the queue and the project's progress. The photos of ``kept`` stay the
    user's (:func:`hold_kept`)."""
    filters = {k: v for k, v in filters.items() if v is not None and v != ""}
    base = image_service.queue_ids(session, project_id, first_for=user.username, **filters)
    ids = routing.queue_ids_for(session, project_id, user, base, filters)  # gold photos mixed in
    # Checked again under the lock; the photos mixed in (gold) are in this queue whatever
    # their status.
    still = in_queue(project_id, **filters)
    mixed_in = set(ids) - set(base)
    if mixed_in:
        still = or_(still, Image.id.in_(mixed_in))
    if lease:
        image = hand_out(
            session,
            project_id,
            user,
            ids,
            still=still,
            direction=direction,
            after_id=after_id,
            kept=kept,
            now=now,
        )
    else:
        image = peek(
            session, user, ids, still=still, direction=direction, after_id=after_id, now=now
        )
    detail = None
    if image is not None:
        detail = routing.detail_for(session, user, image, image_detail(session, image))
        detail = {**detail, "read_only": False, "held_by": None}
    return {
        "image": detail,
        "position": ids.index(image.id) + 1 if image is not None and image.id in ids else None,
        "queue_length": len(ids),
        "progress": image_service.queue_progress(session, project_id),
        "rejections_waiting": rejections.waiting_count(session, project_id, user.username),
    }


def sign_out(session: Session, token: str) -> bool:
    """Revoke ``token`` and give its user's photos back to the queue; whether it existed."""
    user_id = user_service.revoke_token(session, token)
    if user_id is None:
        return False
    release_user(session, user_id)
    return True


def release_user(session: Session, user_id: int, *, project_id: int | None = None) -> int:
    """End every lease ``user_id`` holds (in ``project_id`` only, when given): on sign-out,
    or when the canvas closes. The number released."""
    stmt = update(Image).where(Image.lease_user_id == user_id)
    if project_id is not None:
        stmt = stmt.where(Image.project_id == project_id)
    result = session.execute(
        stmt.values(lease_user_id=None, lease_since=None, lease_until=None),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount or 0)


def release_image(session: Session, project_id: int, image_id: int) -> bool:
    """End whatever lease photo ``image_id`` of the project has (a lead freeing a photo whose
    holder went home); whether it had one. NotFound when the project has no such photo."""
    image = session.get(Image, image_id)
    if image is None or image.project_id != project_id:
        raise NotFound(f"image_id {image_id}: no such photo in this project")
    had = image.lease_user_id is not None and (image.lease_until or 0.0) > time.time()
    session.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(lease_user_id=None, lease_since=None, lease_until=None),
        execution_options={"synchronize_session": False},
    )
    return had


def list_leases(
    session: Session, project_id: int, *, now: float | None = None
) -> list[dict[str, Any]]:
    """The project's live leases, oldest first: who holds which photo, since and until when."""
    now = _now(now)
    rows = session.execute(
        select(
            Image.id,
            Image.file_name,
            Image.status,
            User.username,
            Image.lease_since,
            Image.lease_until,
        )
        .join(User, User.id == Image.lease_user_id)
        .where(Image.project_id == project_id, live(now))
        .order_by(Image.lease_since, Image.id)
    ).all()
    return [
        {
            "image_id": r.id,
            "file_name": r.file_name,
            "status": getattr(r.status, "value", r.status),
            "user": r.username,
            "since": r.lease_since,
            "until": r.lease_until,
            "held_seconds": round(now - r.lease_since, 1),
            "seconds_left": round(r.lease_until - now, 1),
        }
        for r in rows
    ]
