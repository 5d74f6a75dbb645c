"""CVAT for images 1.1 (XML): parse CVAT's ``annotations.xml`` into records, and build one.

Layout: ``<annotations>`` with ``<version>1.1</version>``, a ``<meta>`` naming the task and
its labels (each with its attributes), then one ``<image id name width height>`` per photo
holding ``<polygon points="x1,y1;x2,y2;...">``, ``<box xtl ytl xbr ybr>``, ``<mask rle left top
width height>``, ``<polyline>``, ``<points>`` and ``<tag>`` elements. Coordinates are image
pixels with the origin at the top-left corner, which is ours. A video task's export holds
``<track>`` elements instead, whose shapes name their ``frame`` (the image id).

How our shapes travel: a shape with one part and no holes is one ``<polygon>``; a multi-part
shape is one ``<polygon>`` per part, all with the same ``group_id`` (import regroups them);
a shape with holes (which a CVAT polygon cannot hold) is one ``<mask>``. A mask's ``rle``
counts alternate runs of 0s and 1s over its ``width`` x ``height`` box, row by row, starting
with 0s. ``occluded`` is CVAT's own flag; severity, part_id, fake and fake_note (and any other
attribute) are ``<attribute name>`` children, whose text import turns back into our types.

CVAT's quirks on import: shapes are put in ``z_order`` (stable, so equal levels keep the
file's order); a shape CVAT drew itself (``source="auto"`` or ``"semi-auto"``) keeps that in
``Instances.data["cvat_source"]``; a track's shape with ``outside="1"`` (the object has left
the frame) is not an instance; polylines and points have no area and are reported. Image-level
``<tag>`` labels are free text, not taxonomy classes, and Panelbeater has no per-photo tags,
so they are kept in ``record.meta["cvat_tags"]`` (stored with the photo's source metadata) and
written back from there.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np

from core.files import atomic_write
from core.geometry import GeometryError, Shape, mask_to_shape, shape_to_mask
from core.instances import Instances
from core.records import ImageRecord, LabelResolver, ParseReport
from core.taxonomy import Taxonomy

from .bounds import check_records
from .errors import ExportRefused, FormatError, ImageReadError
from .file_names import safe_base_name, safe_file_name
from .image_files import read_regular_file, resolve_inside

VERSION = "1.1"
#: Where CVAT's export zip (and datumaro) keep the photos, beside ``annotations.xml``.
IMAGES_FOLDER = "images"
XML_NAME = "annotations.xml"
#: Attributes with a fixed type in Panelbeater (``services.labelling.validation``).
_BOOL_ATTRIBUTES = ("fake", "occluded")
_INT_ATTRIBUTES = ("part_id",)
#: Shape elements of CVAT 1.1 that can carry an instance, and those without area.
_AREA_SHAPES = ("polygon", "box", "mask")
_LINE_SHAPES = ("polyline", "points", "cuboid", "ellipse", "skeleton")


# -- masks ---------------------------------------------------------------------


def mask_to_cvat_rle(mask: np.ndarray) -> tuple[list[int], tuple[int, int, int, int]]:
    """CVAT's RLE of a ``(H, W)`` bool mask over its tight box, and that box as
    ``(left, top, width, height)`` in pixels. Raises GeometryError for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        raise GeometryError("the mask is empty")
    top, left = int(rows[0]), int(cols[0])
    height, width = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
    flat = mask[top : top + height, left : left + width].ravel()  # row-major, as CVAT
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)  # CVAT's runs start with 0s
    return runs, (left, top, width, height)


def cvat_rle_to_mask(
    runs: list[int], box: tuple[int, int, int, int], height: int, width: int
) -> np.ndarray:
    """The ``(H, W)`` bool mask of CVAT RLE ``runs`` over ``box`` = (left, top, width,
    height); raises GeometryError when the box leaves the image or the runs do not fill it."""
    left, top, bw, bh = box
    if bw <= 0 or bh <= 0 or left < 0 or top < 0 or left + bw > width or top + bh > height:
        raise GeometryError(
            f"the mask box (left {left}, top {top}, {bw}x{bh}) does not lie inside the "
            f"{width}x{height} image"
        )
    if any(r < 0 for r in runs) or sum(runs) != bw * bh:
        raise GeometryError(
            f"the mask's rle covers {sum(runs):,} pixels but its {bw}x{bh} box has {bw * bh:,}"
        )
    values = np.arange(len(runs)) % 2 == 1
    out = np.zeros((height, width), dtype=bool)
    out[top : top + bh, left : left + bw] = np.repeat(values, runs).reshape(bh, bw)
    return out


# -- parse ---------------------------------------------------------------------


def _number(el: ET.Element, key: str) -> float:
    raw = el.get(key)
    if raw is None:
        raise GeometryError(f"the field {key!r} is missing")
    try:
        value = float(raw)
    except ValueError:
        raise GeometryError(f"the field {key!r} is not a number ({raw!r:.40})") from None
    if not np.isfinite(value):
        raise GeometryError(f"the field {key!r} is not a finite number ({raw!r:.40})")
    return value


def _points(raw: str | None) -> list[list[float]]:
    if not raw:
        raise GeometryError("the field 'points' is missing or empty")
    try:
        return [[float(v) for v in pair.split(",")] for pair in raw.strip().split(";")]
    except ValueError:
        raise GeometryError(f"'points' must read 'x1,y1;x2,y2;...', got {raw!r:.60}") from None


def element_shape(el: ET.Element, height: int, width: int) -> Shape:
    """One CVAT shape element as a shape; raises GeometryError with the reason."""
    if el.tag == "polygon":
        return Shape.from_ring(_points(el.get("points")))
    if el.tag == "box":
        x0, y0, x1, y1 = (_number(el, k) for k in ("xtl", "ytl", "xbr", "ybr"))
        if x1 <= x0 or y1 <= y0:
            raise GeometryError(f"the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area")
        return Shape.from_box(x0, y0, x1, y1)
    if el.tag == "mask":
        box = tuple(int(_number(el, k)) for k in ("left", "top", "width", "height"))
        try:
            runs = [int(v) for v in (el.get("rle") or "").split(",")]
        except ValueError:
            raise GeometryError("'rle' must be comma-separated whole numbers") from None
        shape = mask_to_shape(
            cvat_rle_to_mask(runs, box, height, width),  # type: ignore[arg-type]
            tolerance=0,
            min_area=0,
        )
        if shape is None:
            raise GeometryError("the mask is empty")
        return shape
    raise GeometryError(f"a <{el.tag}> has no area (supported: polygon, box, mask)")


def element_attributes(el: ET.Element) -> dict[str, Any]:
    """The shape's ``<attribute>`` children and its ``occluded`` flag, as our types:
    fake/occluded as bools, part_id as an int, the rest as text."""
    attrs: dict[str, Any] = {}
    for a in el.findall("attribute"):
        name, text = a.get("name"), (a.text or "").strip()
        if not name:
            continue
        if name in _BOOL_ATTRIBUTES:
            attrs[name] = text.lower() in ("true", "1", "yes")
        elif name in _INT_ATTRIBUTES and text.lstrip("-").isdigit():
            attrs[name] = int(text)
        elif text:
            attrs[name] = text
    if el.get("occluded") == "1":
        attrs["occluded"] = True
    return attrs


@dataclass
class _Item:
    """One parsed shape element before grouping."""

    shape: Shape
    class_id: int
    attributes: dict[str, Any]
    z_order: int
    group: int
    source: str


def _frames_of_tracks(root: ET.Element) -> dict[str, list[ET.Element]]:
    """Image id -> the shapes of ``<track>`` elements on that frame, each given its track's
    label; shapes marked ``outside`` (the object left the frame) are dropped."""
    by_frame: dict[str, list[ET.Element]] = defaultdict(list)
    for track in root.iter("track"):
        for el in track:
            if el.get("outside") == "1":
                continue
            el.set("label", track.get("label", ""))
            if track.get("group_id"):
                el.set("group_id", track.get("group_id", ""))
            by_frame[el.get("frame", "")].append(el)
    return by_frame


def load_xml(path: str | Path) -> ET.Element:
    """The root of a CVAT XML file; raises FormatError naming the file when it is not one."""
    from core.config import get_settings

    path = Path(path)
    try:
        raw = read_regular_file(
            path,
            limit=get_settings().max_label_file_bytes,
            what="label file",
            setting="max_label_file_bytes",
        )
    except FileNotFoundError as e:
        raise FormatError(f"{path}: the file does not exist") from e
    except ImageReadError as e:
        raise FormatError(str(e)) from e
    return root_of(raw, str(path))


def root_of(raw: bytes, source: str) -> ET.Element:
    """The ``<annotations>`` root of CVAT XML bytes; raises FormatError naming ``source``."""
    if b"<!DOCTYPE" in raw[:4096].upper() or b"<!ENTITY" in raw.upper():
        raise FormatError(
            f"{source}: a CVAT file has no DOCTYPE or entities; is it the right file?"
        )
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise FormatError(
            f"{source}: not valid XML ({e}); is this a CVAT for images export?"
        ) from e
    if root.tag != "annotations":
        raise FormatError(
            f"{source}: the root element is <{root.tag}>, not <annotations>; export the task "
            "from CVAT as 'CVAT for images 1.1'"
        )
    return root


def _image_size(im: ET.Element, where: str) -> tuple[int, int]:
    try:
        w, h = int(im.get("width", "")), int(im.get("height", ""))
    except ValueError:
        raise FormatError(
            f"{where}: 'width' and 'height' must be whole numbers of pixels; fix the file"
        ) from None
    if w <= 0 or h <= 0:
        raise FormatError(f"{where}: 'width' and 'height' must be positive, got {w}x{h}")
    return w, h


def _group_items(items: list[_Item]) -> Instances:
    """Items in z_order, the polygons of one ``group_id`` joined into one multi-part shape."""
    items = sorted(items, key=lambda it: it.z_order)  # stable: equal levels keep file order
    merged: list[_Item] = []
    by_group: dict[tuple[int, int], _Item] = {}
    for it in items:
        key = (it.group, it.class_id)
        if it.group and key in by_group:
            head = by_group[key]
            head.shape = Shape(head.shape.polygons + it.shape.polygons)
            head.attributes = {**it.attributes, **head.attributes}
            continue
        if it.group:
            by_group[key] = it
        merged.append(it)
    if not merged:
        return Instances.empty()
    return Instances(
        [it.shape for it in merged],
        [it.class_id for it in merged],
        attributes=[it.attributes for it in merged],
        data={"cvat_source": [it.source for it in merged]},
    )


def _image_items(
    els: Iterable[ET.Element],
    resolver: LabelResolver,
    size: tuple[int, int],
    where: str,
    report: ParseReport,
) -> list[_Item]:
    items = []
    for k, el in enumerate(els):
        ewhere = f"{where}, <{el.tag}> {k + 1}"
        if el.tag in _LINE_SHAPES:
            report.skipped.append(f"{ewhere}: a {el.tag} has no area; left out")
            continue
        label = el.get("label") or ""
        if not label.strip():
            report.failed.append(f"{ewhere}: no 'label'; give the shape a label or delete it")
            continue
        try:
            shape = element_shape(el, size[1], size[0])
            group = int(el.get("group_id") or 0)
            z_order = int(el.get("z_order") or 0)
        except (GeometryError, ValueError) as e:
            report.failed.append(f"{ewhere} ({label}): {e}; fix or delete this shape")
            continue
        cls = resolver.resolve(label.strip())
        if cls is None:
            continue  # unknown label: collected by the resolver, the caller stops the import
        source = el.get("source") or "manual"
        items.append(_Item(shape, cls.id, element_attributes(el), z_order, group, source))
    return items


def parse(
    data: str | Path | ET.Element,
    resolver: LabelResolver,
    *,
    source: str,
    images_dir: str | Path | None = None,
) -> tuple[list[ImageRecord], ParseReport]:
    """Records from a CVAT for images 1.1 file (a path, or its parsed root).

    With ``images_dir``, a photo not in that folder but in its ``images/`` subfolder (CVAT's
    export zip, unpacked) is found there (``meta["path"]``). Shapes that cannot be used are
    listed in the report and the rest goes on; unknown labels are collected in the resolver.

    Raises:
        FormatError: not a CVAT XML file, or an ``<image>`` without a usable size.
    """
    root = data if isinstance(data, ET.Element) else load_xml(data)
    report = ParseReport()
    tracks = _frames_of_tracks(root)
    images_dir = Path(images_dir) if images_dir is not None else None
    records = []
    for i, im in enumerate(root.iter("image")):
        name = im.get("name") or ""
        where = f"{source}: <image> {im.get('id', i)} ({name!r})"
        if not name.strip():
            report.failed.append(f"{where}: no 'name'; add the photo's file name")
            continue
        size = _image_size(im, where)
        shapes = [el for el in im if el.tag in _AREA_SHAPES + _LINE_SHAPES]
        shapes += tracks.get(im.get("id", ""), [])
        items = _image_items(shapes, resolver, size, where, report)
        meta: dict[str, Any] = {"cvat_id": im.get("id")}
        tags = [t.get("label") for t in im.findall("tag") if t.get("label")]
        if tags:
            meta["cvat_tags"] = tags
        if images_dir is not None:
            beside = _in_images_folder(images_dir, name)
            if beside is not None:
                meta["path"] = beside
        records.append(
            ImageRecord(name, size[0], size[1], _group_items(items), sha256=None, meta=meta)
        )
    return records, report


def _in_images_folder(images_dir: Path, name: str) -> str | None:
    """``images/<name>`` when the photo is not in ``images_dir`` but in its ``images/``."""
    try:
        if resolve_inside(images_dir, name).exists():
            return None
        if resolve_inside(images_dir, Path(IMAGES_FOLDER) / name).exists():
            return f"{IMAGES_FOLDER}/{name}"
    except ImageReadError:
        return None  # the import reports the way out by name
    return None


# -- build ---------------------------------------------------------------------


def _coord(v: float) -> str:
    return f"{v:.2f}"  # CVAT writes two decimals; the store keeps two as well


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _meta(taxonomy: Taxonomy, tags: list[str], n_images: int) -> ET.Element:
    """``<meta><task>`` with every taxonomy class (and tag label) and our attributes."""
    meta = ET.Element("meta")
    task = ET.SubElement(meta, "task")
    ET.SubElement(task, "name").text = "panelbeater"
    ET.SubElement(task, "size").text = str(n_images)
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    specs = (
        ("severity", "select", "minor\nmoderate\nsevere"),
        ("part_id", "text", ""),
        ("fake", "checkbox", "false"),
        ("fake_note", "text", ""),
    )
    names = [(c.name, c.color) for c in taxonomy] + [(t, "#808080") for t in tags]
    for name, color in names:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "color").text = color
        ET.SubElement(label, "type").text = "any"
        attributes = ET.SubElement(label, "attributes")
        for aname, kind, values in specs:
            a = ET.SubElement(attributes, "attribute")
            ET.SubElement(a, "name").text = aname
            ET.SubElement(a, "mutable").text = "False"
            ET.SubElement(a, "input_type").text = kind
            ET.SubElement(a, "default_value").text = values.split("\n")[0]
            ET.SubElement(a, "values").text = values
    return meta


def _shape_elements(
    shape: Shape, label: str, attrs: dict[str, Any], group: int, height: int, width: int
) -> list[ET.Element]:
    """A shape as one polygon, one mask (holes) or grouped polygons (several parts)."""
    common = {
        "label": label,
        "source": "manual",
        "occluded": "1" if attrs.get("occluded") else "0",
        "z_order": "0",
    }
    if shape.has_holes:
        mask = shape_to_mask(shape, height, width)
        if not mask.any():
            raise ExportRefused(
                f"{label} with holes covers no pixel of its {width}x{height} photo; redraw or "
                "delete it in the workspace, then export again"
            )
        runs, (left, top, w, h) = mask_to_cvat_rle(mask)
        el = ET.Element(
            "mask",
            {
                **common,
                "rle": ",".join(map(str, runs)),
                "left": str(left),
                "top": str(top),
                "width": str(w),
                "height": str(h),
            },
        )
        els = [el]
    else:
        els = []
        for p in shape.polygons:
            pts = ";".join(f"{_coord(x)},{_coord(y)}" for x, y in p.exterior.tolist())
            els.append(ET.Element("polygon", {**common, "points": pts}))
    if len(els) > 1:
        for el in els:
            el.set("group_id", str(group))
    for el in els:
        for key, value in attrs.items():
            if key != "occluded" and value is not None:
                ET.SubElement(el, "attribute", {"name": key}).text = _attribute_text(value)
    return els


def image_names(records: list[ImageRecord]) -> list[str]:
    """Each record's ``<image name>``: its safe file name, made unique with an index prefix
    on the base name when two photos share it (they share the zip's ``images/`` too)."""
    used: set[str] = set()
    names = []
    for i, rec in enumerate(records):
        name = safe_file_name(rec.file_name) or safe_base_name(str(rec.meta.get("path", "")))
        name = name or f"image_{i:06d}.jpg"
        if name in used:
            folder, _, base = name.rpartition("/")
            name = (folder + "/" if folder else "") + f"{i:06d}_{base}"
        used.add(name)
        names.append(name)
    return names


def build(records: Iterable[ImageRecord], taxonomy: Taxonomy) -> bytes:
    """CVAT for images 1.1 XML (UTF-8 bytes) for ``records``; labels are the whole taxonomy
    plus every tag in ``meta["cvat_tags"]``.

    Raises:
        ExportRefused: a coordinate that is not finite or lies far outside its image
            (``exports.bounds``).
    """
    records = check_records(records)
    tags = sorted({t for r in records for t in r.meta.get("cvat_tags") or ()})
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = VERSION
    root.append(_meta(taxonomy, tags, len(records)))
    for img_id, (rec, name) in enumerate(zip(records, image_names(records), strict=True)):
        im = ET.SubElement(
            root,
            "image",
            {"id": str(img_id), "name": name, "width": str(rec.width), "height": str(rec.height)},
        )
        inst = rec.instances
        for k, (shape, cid) in enumerate(zip(inst.shapes, inst.class_ids.tolist(), strict=True)):
            label = taxonomy.by_id(int(cid)).name
            im.extend(
                _shape_elements(shape, label, inst.attributes[k], k + 1, rec.height, rec.width)
            )
        for tag in rec.meta.get("cvat_tags") or ():
            ET.SubElement(im, "tag", {"label": tag, "source": "manual"})
    ET.indent(root, space="  ")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")


def write(
    records: Iterable[ImageRecord], taxonomy: Taxonomy, out_path: str | Path, *, zipped: bool
) -> None:
    """The XML at ``out_path``, all or nothing; with ``zipped`` a zip as CVAT's own export
    lays it out: ``annotations.xml`` and the photos (``meta["path"]``) under ``images/``.

    Raises:
        ExportRefused: see :func:`build`; nothing is written then.
        FormatError: a photo's file cannot be read for the zip (naming it).
    """
    records = list(records)
    xml = build(records, taxonomy)
    if not zipped:
        with atomic_write(out_path) as f:
            f.write(xml)
        return
    with atomic_write(out_path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(XML_NAME, xml)
        for rec, name in zip(records, image_names(records), strict=True):
            src = rec.meta.get("path")
            if not src or not Path(src).is_file():
                raise FormatError(
                    f"photo {rec.file_name}: its file {src} is missing, so the zip cannot hold "
                    "it; restore the file, or export the XML alone"
                )
            # photos are compressed already: store them as they are
            z.write(src, f"{IMAGES_FOLDER}/{name}", compress_type=zipfile.ZIP_STORED)
