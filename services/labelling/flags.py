"""Which photos are queued for a fraud check: the rule behind the workspace's "flagged"
filter, which the fraud screen (``services.claims.fraud_screen``) feeds."""

from __future__ import annotations

from sqlalchemy import and_, exists, func, or_

from core.config import get_settings
from db.models import Annotation, Image, Prediction, PredictionState

#: ``Image.meta`` key the fraud screen sets on a photo it queues for a check.
CHECK_KEY = "fraud_check"


def severities() -> list[str]:
    """The damage severities that queue a photo for a check (setting ``fraud_severities``)."""
    return [s.strip() for s in get_settings().fraud_severities.split(",") if s.strip()]


def flag_clause():
    """SQL: the photo is queued for a check (fake flag or prediction, high-severity damage,
    or a screen reason); for ``services.labelling.images``' ``flagged`` filter."""
    live = and_(Annotation.image_id == Image.id, Annotation.deleted == False)  # noqa: E712
    clauses = [
        exists().where(
            live, or_(Annotation.group == "fake", Annotation.attributes["fake"].as_boolean())
        ),
        exists().where(
            Prediction.image_id == Image.id,
            Prediction.group == "fake",
            Prediction.state != PredictionState.withdrawn,
        ),
        # no key is NULL, and NOT (... OR NULL) would drop the photo from "not flagged"
        func.coalesce(Image.meta[CHECK_KEY].as_boolean(), False),
    ]
    if severities():
        clauses.append(
            exists().where(
                live,
                Annotation.group == "damage",
                Annotation.attributes["severity"].as_string().in_(severities()),
            )
        )
    return or_(*clauses)
