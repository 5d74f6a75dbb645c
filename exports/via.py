"""VGG Image Annotator (VIA) 1.x and 2.x region files.

Accepted layouts:

- VIA 1.x / 2.x ``via_region_data.json``: ``{"<filename><size>": {"filename", "size", "regions", ...}}``;
- a VIA 2.x project: the same dict under ``"_via_img_metadata"``;
- the list form: ``[{"filename", "regions", ...}, ...]``.

``regions`` may be a dict (1.x, keyed "0", "1"...) or a list (2.x). Shapes: ``polygon`` and
``polyline`` (``all_points_x/y``), ``rect`` (``x, y, width, height``), ``circle`` (``cx, cy, r``)
and ``ellipse`` (``cx, cy, rx, ry``, optional ``theta`` in radians). Coordinates are image
pixels, which is our convention. VIA files do not store image sizes, so they are read from
the image files when ``images_dir`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.geometry import GeometryError, Polygon, Shape, as_ring, ellipse_ring
from core.instances import Instances
from core.records import ImageRecord, LabelResolver, ParseReport

from .errors import FormatError, ImageReadError
from .image_files import read_image_info, resolve_inside

LABEL_KEYS = ("name", "label", "class")


def _entries(data: Any, source: str) -> list[tuple[str, dict]]:
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = [(f"#{i}", e) for i, e in enumerate(data)]
    else:
        raise FormatError(
            f"{source}: a VIA file holds a JSON object keyed by image (or a list of images), "
            f"got {type(data).__name__}"
        )
    for key, e in items:
        if not isinstance(e, dict):
            raise FormatError(
                f"{source}: entry {key!r} must be an object with 'filename' and 'regions'"
            )
    if items and not any("regions" in e or "filename" in e for _, e in items):
        raise FormatError(
            f"{source}: no entry has 'filename' or 'regions'; this does not look like a VIA "
            "region file (export it from VIA with Annotation > Export as JSON)"
        )
    return items


def region_shape(sa: dict) -> Shape:
    """A VIA ``shape_attributes`` dict as a shape; raises GeometryError with the reason."""
    if not isinstance(sa, dict):
        raise GeometryError(
            f"shape_attributes must be an object with 'name' and coordinates, got {sa!r:.60}"
        )
    name = sa.get("name")
    try:
        if name in ("polygon", "polyline"):
            xs, ys = sa["all_points_x"], sa["all_points_y"]
            if len(xs) != len(ys):
                raise GeometryError(
                    f"all_points_x has {len(xs)} values but all_points_y has {len(ys)}"
                )
            return Shape((Polygon(as_ring(list(zip(xs, ys, strict=True)), where=name)),))
        if name == "rect":
            x, y, w, h = (float(sa[k]) for k in ("x", "y", "width", "height"))
            if w <= 0 or h <= 0:
                raise GeometryError(f"rect has width {w} and height {h}; both must be positive")
            return Shape.from_box(x, y, x + w, y + h)
        if name == "circle":
            r = float(sa["r"])
            return Shape.from_ring(ellipse_ring(float(sa["cx"]), float(sa["cy"]), r, r))
        if name == "ellipse":
            return Shape.from_ring(
                ellipse_ring(
                    float(sa["cx"]),
                    float(sa["cy"]),
                    float(sa["rx"]),
                    float(sa["ry"]),
                    float(sa.get("theta", 0.0)),
                )
            )
    except GeometryError:
        raise
    except KeyError as e:
        raise GeometryError(f"{name} region lacks the field {e.args[0]!r}") from e
    except (TypeError, ValueError) as e:
        raise GeometryError(f"{name} region has non-numeric coordinates ({e})") from e
    raise GeometryError(f"shape {name!r} has no area (supported: polygon, rect, circle, ellipse)")


def region_label(ra: Any, label_key: str | None) -> str:
    """The label of a region from its ``region_attributes``; raises ValueError with the reason."""
    if not isinstance(ra, dict) or not ra:
        raise ValueError("the region has no region_attributes to take a label from")
    if label_key is not None:
        if label_key not in ra:
            raise ValueError(f"region_attributes has no {label_key!r} (it has {sorted(ra)})")
        value = ra[label_key]
    else:
        key = next((k for k in LABEL_KEYS if k in ra), None)
        if key is None and len(ra) == 1:
            key = next(iter(ra))
        if key is None:
            raise ValueError(
                f"cannot tell which of the region attributes {sorted(ra)} is the label; "
                "name it with the label key option"
            )
        value = ra[key]
    if isinstance(value, dict):  # VIA 2 checkbox attribute: {"dent": true}
        chosen = [k for k, v in value.items() if v]
        if len(chosen) != 1:
            raise ValueError(
                f"the label attribute selects {len(chosen)} options {chosen}; expected one"
            )
        value = chosen[0]
    if not isinstance(value, (str, int)) or str(value).strip() == "":
        raise ValueError(f"the label is empty or not text ({value!r})")
    return str(value).strip()


def parse(
    data: Any,
    resolver: LabelResolver,
    *,
    source: str,
    images_dir: str | Path | None = None,
    label_key: str | None = None,
) -> tuple[list[ImageRecord], ParseReport]:
    """Records from a loaded VIA file.

    With ``images_dir`` each entry's image is read (size, sha256 in ``record.sha256``);
    entries whose file is missing or unreadable are reported and left out. Without it,
    width and height are 0 and the caller must read the images.
    """
    report = ParseReport()
    records = []
    images_dir = Path(images_dir) if images_dir is not None else None
    for key, e in _entries(data, source):
        fname = e.get("filename")
        raw_regions = e.get("regions") or []
        if isinstance(raw_regions, dict):
            regions = list(raw_regions.items())
        elif isinstance(raw_regions, list):
            regions = [(str(j), r) for j, r in enumerate(raw_regions)]
        else:
            report.failed.append(
                f"{source}: entry {key!r}: 'regions' must be a list (VIA 2) or an object "
                f"(VIA 1), got {raw_regions!r:.60}; fix or delete the entry"
            )
            continue
        if not isinstance(fname, str) or not fname.strip():
            report.failed.append(
                f"{source}: entry {key!r} has no 'filename'; add the image's file name or delete the entry"
            )
            continue
        where = f"{source}: image {fname!r}"
        width = height = 0
        sha = fmt = None
        if images_dir is not None:
            try:  # refused before any look at the disk, so the outside stays unprobed
                path = resolve_inside(images_dir, fname)
            except ImageReadError as err:
                report.failed.append(f"{where}: {err}; entry left out")
                continue
            if not path.exists():
                demo = "" if regions else " and no regions (VIA's demo entries look like this)"
                report.skipped.append(
                    f"{where}: the file is not in {images_dir}{demo}; entry left out"
                )
                continue
            try:
                info = read_image_info(path)
            except ImageReadError as err:
                report.failed.append(f"{where}: {err}")
                continue
            width, height, sha, fmt = info.width, info.height, info.sha256, info.format
        elif not regions:
            report.skipped.append(
                f"{where}: no regions, and no images folder was given to check the file; entry left out"
            )
            continue
        shapes, class_ids, attrs = [], [], []
        for rkey, region in regions:
            rwhere = f"{where}, region {rkey}"
            if not isinstance(region, dict):
                report.failed.append(f"{rwhere}: expected an object with shape_attributes")
                continue
            try:
                shape = region_shape(region.get("shape_attributes") or {})
                label = region_label(region.get("region_attributes"), label_key)
            except (GeometryError, ValueError) as err:
                report.failed.append(f"{rwhere}: {err}; fix or delete this region")
                continue
            cls = resolver.resolve(label)
            if cls is None:
                continue  # collected by the resolver; the caller stops the import
            shapes.append(shape)
            class_ids.append(cls.id)
            ra = region.get("region_attributes") or {}
            attrs.append(
                {k: v for k, v in ra.items() if k in ("severity", "occluded", "fake_note")}
            )
        inst = Instances(shapes, class_ids, attributes=attrs) if shapes else Instances.empty()
        meta: dict[str, Any] = {"via_key": key}
        if fmt:
            meta["format"] = fmt
        records.append(ImageRecord(fname, width, height, inst, sha256=sha, meta=meta))
    return records, report
