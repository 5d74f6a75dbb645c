"""The rules an incoming annotation set must meet before it is stored: whole-number ids and
version, the per-photo count, a class of the project's taxonomy, geometry inside the photo,
known attributes. Each refusal is an :class:`AnnotationInvalid` sentence naming the field."""

from __future__ import annotations

import json
from typing import Any

from core.config import env_name, get_settings
from core.geometry import (
    GeometryError,
    Shape,
    check_geometry,
    geometry_counts,
    repair_geometry,
)
from core.instances import SEVERITIES
from core.taxonomy import Taxonomy, TaxonomyError
from db.models import AnnotationSource, Image
from services.errors import Invalid, check_comment_length

#: Largest id a client may send (the database's 32-bit integer columns).
MAX_ID = 2**31 - 1


class AnnotationInvalid(Invalid):
    """An annotation in a save request that cannot be stored."""


def normalise_attributes(raw: object, taxonomy: Taxonomy, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise AnnotationInvalid(f"{where}: 'attributes' must be an object")
    out = dict(raw)
    sev = out.get("severity")
    if sev is not None and sev not in SEVERITIES:
        raise AnnotationInvalid(f"{where}: severity {sev!r} must be one of {', '.join(SEVERITIES)}")
    part = out.get("part_id")
    if part is not None:
        try:
            cls = taxonomy.by_id(int(part))
        except (TaxonomyError, TypeError, ValueError):
            raise AnnotationInvalid(f"{where}: part_id {part!r} is not a class id") from None
        if cls.group != "part":
            raise AnnotationInvalid(f"{where}: part_id {part} is {cls.name!r}, not a part")
        out["part_id"] = cls.id
    for flag in ("fake", "occluded"):
        if flag in out and not isinstance(out[flag], bool):
            raise AnnotationInvalid(f"{where}: {flag!r} must be true or false")
    limits = get_settings()
    note = out.get("fake_note")
    if note is not None and not isinstance(note, str):
        raise AnnotationInvalid(f"{where}: fake_note must be text")
    check_comment_length(note, f"{where}: fake_note", error=AnnotationInvalid)
    size = len(json.dumps(out, default=str))
    if size > limits.max_attribute_chars:
        raise AnnotationInvalid(
            f"{where}: 'attributes' is {size:,} characters as JSON, more than the limit of "
            f"{limits.max_attribute_chars:,} (setting {env_name('max_attribute_chars')})"
        )
    return out


def whole_number(value: object, field: str, *, low: int = 0, high: int = MAX_ID) -> int:
    """``value`` as an int when it is one (not a bool, not 1.5, not "3") within
    [low, high]; else AnnotationInvalid naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnnotationInvalid(f"{field} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise AnnotationInvalid(f"{field} must be between {low} and {high}, not {value}")
    return value


def normalise_annotation(
    raw: dict[str, Any], taxonomy: Taxonomy, index: int, image: Image
) -> dict[str, Any]:
    """Validate one incoming annotation; raises AnnotationInvalid naming the field."""
    where = f"annotation {index + 1}"
    if not isinstance(raw, dict):
        raise AnnotationInvalid(f"{where}: expected an object")
    cls = None
    if raw.get("class_id") is not None:
        class_id = whole_number(raw["class_id"], f"{where}: class_id")
        try:
            cls = taxonomy.by_id(class_id)
        except (TaxonomyError, TypeError, ValueError):
            raise AnnotationInvalid(
                f"{where}: class_id {raw['class_id']!r} is not in the taxonomy"
            ) from None
    elif raw.get("class_name") is not None:
        cls = taxonomy.get(str(raw["class_name"]))
        if cls is None:
            raise AnnotationInvalid(f"{where}: class {raw['class_name']!r} is not in the taxonomy")
    else:
        raise AnnotationInvalid(f"{where}: needs 'class_id' or 'class_name'")
    try:
        # Partly-outside polygons are fine; far-off ones are a bug. The canvas checks the same
        # rules before it sends (geometry.js check).
        shape = check_geometry(
            raw.get("geometry"),
            image.width,
            image.height,
            max_vertices=get_settings().max_vertices_per_polygon,
        )
    except GeometryError as e:
        raise AnnotationInvalid(f"{where}: {e}") from None
    source = raw.get("source") or AnnotationSource.manual.value
    try:
        source = AnnotationSource(source)
    except ValueError:
        raise AnnotationInvalid(
            f"{where}: source {source!r} must be one of {', '.join(s.value for s in AnnotationSource)}"
        ) from None
    ann_id = raw.get("id")
    prediction_id = raw.get("prediction_id")
    return {
        "id": None if ann_id is None else whole_number(ann_id, f"{where}: id", low=1),
        "class_id": cls.id,
        "group": cls.group,
        "geometry": shape.to_json(),
        "attributes": normalise_attributes(raw.get("attributes"), taxonomy, where),
        "source": source,
        "prediction_id": None
        if prediction_id is None
        else whole_number(prediction_id, f"{where}: prediction_id", low=1),
    }


def check_request(expected_version: object, annotations: list[Any]) -> None:
    """What every save checks first, of the request as a whole: ``expected_version`` is a whole
    number and the set is within the per-photo limits (:func:`check_sizes`)."""
    whole_number(expected_version, "version")
    check_sizes(annotations)


def check_sizes(annotations: list[Any]) -> None:
    """Refuse a set larger than the per-photo limit ``max_polygons_per_image``, counting the
    annotations and, apart, their polygons: every part and every hole, so that one annotation
    of 20,000 parts does not pass as one. Counted on the request as sent, before any polygon
    is parsed or repaired, so an oversized set costs next to nothing to refuse."""
    limit = get_settings().max_polygons_per_image
    setting = env_name("max_polygons_per_image")
    if len(annotations) > limit:
        raise AnnotationInvalid(
            f"{len(annotations):,} annotations on one photo is more than the limit of {limit:,} "
            f"(setting {setting})"
        )
    rings = sum(geometry_counts(a.get("geometry"))[0] for a in annotations if isinstance(a, dict))
    if rings > limit:
        raise AnnotationInvalid(
            f"the {len(annotations):,} annotations hold {rings:,} polygons (each part and each "
            f"hole counts), more than the limit of {limit:,} on one photo (setting {setting}); "
            "merge or simplify them, or split the photo's labels"
        )


def check_shapes(annotations: list[Any]) -> None:
    """Refuse the whole request when an annotation is not an object, its geometry is not a list
    of polygons, or a coordinate is NaN or infinite (what a save without ``keep_going`` checks
    before anything else)."""
    for i, a in enumerate(annotations):
        if not isinstance(a, dict):
            raise AnnotationInvalid(f"annotation {i + 1}: expected an object")
        if not isinstance(a.get("geometry"), list):
            raise AnnotationInvalid(f"annotation {i + 1}: 'geometry' must be a list of polygons")
        if has_nonfinite(a.get("geometry")):
            raise AnnotationInvalid(f"annotation {i + 1}: a coordinate is NaN or infinite")


def has_nonfinite(value: Any) -> bool:
    """True when a NaN or infinity hides anywhere in ``value`` (json's C encoder finds it fast)."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return True
    return False


def repaired(annotations: list[Any], stored: dict[int, Any]) -> list[Any]:
    """``annotations`` with the self-crossing outlines of new or changed geometry split;
    geometry equal to ``stored`` (annotation id -> stored geometry) stays as it is (an imported
    outline is the importer's business), and so does geometry over the vertex limit."""
    out = []
    max_points = get_settings().max_vertices_per_polygon
    for a in annotations:
        geom = a.get("geometry") if isinstance(a, dict) else None
        ann_id = a.get("id") if isinstance(a, dict) else None
        same = isinstance(ann_id, int) and stored.get(ann_id) == geom
        # The search for crossings is quadratic: a shape the vertex limit refuses anyway is
        # left for the rules to name, not searched.
        if isinstance(geom, list) and not same and geometry_counts(geom)[1] <= max_points:
            try:
                Shape.from_json(geom)  # malformed: left for the rules to name
                a = {**a, "geometry": repair_geometry(geom)}
            except (GeometryError, TypeError, ValueError):
                pass
        out.append(a)
    return out
