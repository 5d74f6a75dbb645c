"""clip stored shapes that reach far outside their photo; report those that cannot be repaired

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 09:00:00

Saves now clip a shape that reaches beyond half the photo's longer side past its edge, as
imports always did (``core.geometry.check_geometry``, ``fit_to_image``); before, a save stored
it as sent, so a vertex at 1e300 sat in the store, gave the COCO export ``"area": null`` and
crashed pycocotools. This repairs the rows stored that way, in ``annotation`` (deleted ones
too; a changed row's ``version`` is bumped) and ``prediction``: the shape is clipped to its
photo. A row that cannot be repaired (a coordinate that is NaN, infinite or null, nothing left
inside the photo) is left as it is and reported as a warning naming it; the exports refuse it
by name until it is redrawn or deleted. No schema change; the downgrade keeps the repairs.
"""

from __future__ import annotations

import json
import logging
import sys

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    conn = op.get_bind()
    image = sa.table("image", sa.column("id"), sa.column("width"), sa.column("height"))
    for name, bump in (("annotation", True), ("prediction", False)):
        columns = [sa.column("id"), sa.column("image_id"), sa.column("geometry", sa.JSON)]
        table = sa.table(name, *columns, *([sa.column("version")] if bump else []))
        # As text, parsed by Python's json, which reads NaN and Infinity: the engine's own
        # parser refuses them, and they are what this is looking for.
        rows = conn.execute(
            sa.select(table.c.id, table.c.image_id, sa.cast(table.c.geometry, sa.Text))
            .select_from(table.join(image, image.c.id == table.c.image_id))
            .add_columns(image.c.width, image.c.height)
            .order_by(table.c.id)
        )
        repaired, refused = [], []
        for row_id, image_id, text, width, height in rows:
            try:
                fixed = refit(json.loads(text), width, height)
            except ValueError as e:  # GeometryError, or text that is not JSON
                refused.append(f"{name} {row_id} (image {image_id}): {e}")
                continue
            if fixed is not None:
                repaired.append({"row_id": row_id, "fixed": fixed})
        if repaired:
            values = {"geometry": sa.bindparam("fixed", type_=sa.JSON)}
            if bump:
                values["version"] = table.c.version + 1
            conn.execute(
                table.update().where(table.c.id == sa.bindparam("row_id")).values(**values),
                repaired,
            )
            ids = ", ".join(str(r["row_id"]) for r in repaired)
            log.warning("clipped %d %s row(s) to their photo: %s", len(repaired), name, ids)
        for line in refused:
            log.warning(
                "%s; cannot be clipped, left as it is: redraw or delete it in the workspace "
                "(the exports refuse it until then)",
                line,
            )


def refit(data: object, width: int, height: int) -> list[dict] | None:
    """``data`` clipped to its photo when it reaches far outside it (``core.geometry``'s rule),
    None when it fits as it is. Raises GeometryError (a ValueError) when it cannot be
    repaired. The vertex limit is not applied: a stored shape keeps its points."""
    from core.geometry import Shape, fit_to_image, reach_of

    shape = Shape.from_json(data)  # refuses NaN, infinities and nulls
    if not any(reach_of(shape, width, height)):
        return None
    fitted, _ = fit_to_image(shape, width, height, max_vertices=sys.maxsize)
    return fitted.to_json()


def downgrade() -> None:
    pass  # the clipped parts were beyond the photo; nothing to restore
