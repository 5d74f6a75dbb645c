"""COCO instance segmentation: parse a loaded COCO dict into records, and build one.

Coordinates are COCO's: pixels with the origin at the top-left image corner, which is
also ours. Polygons are flat ``[x0, y0, x1, y1, ...]`` lists; an annotation's several
polygons are the parts of one instance. COCO polygons cannot express holes, so shapes
with holes are written as compressed RLE (and traced back exactly on import).

Also reads the COCO-Annotator flavour: extra keys everywhere, ``iscrowd`` as a JSON bool,
and a ``_background_`` category that no annotation should use; and Roboflow's, whose parent
category (``car``, id 0) no annotation uses. A category no annotation uses is ignored (with a
note in the report), so its name needs no label map.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from core.geometry import GeometryError, Shape, mask_to_shape, shape_to_mask
from core.instances import Instances
from core.records import SPLITS, ImageRecord, LabelResolver, ParseReport
from core.taxonomy import Taxonomy

from .bounds import check_records
from .errors import FormatError
from .file_names import record_file_name
from .rings import shape_from_flat_rings

BACKGROUND_NAMES = frozenset({"_background_", "__background__", "background"})


# -- parse ---------------------------------------------------------------------


def _require_list(data: dict, key: str, source: str, *, required: bool = True) -> list:
    if key not in data:
        if required:
            raise FormatError(
                f"{source}: the COCO file has no {key!r} list; a COCO instance file needs "
                f"'images', 'annotations' and 'categories' (is this really a COCO export?)"
            )
        return []
    value = data[key]
    if not isinstance(value, list):
        raise FormatError(f"{source}: {key!r} must be a list, got {type(value).__name__}")
    return value


def _field(entry: Any, key: str, types: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: expected an object, got {type(entry).__name__}")
    if key not in entry:
        raise FormatError(f"{where}: the field {key!r} is missing")
    value = entry[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise FormatError(f"{where}: the field {key!r} has the wrong type ({value!r})")
    return value


def rle_string_to_counts(s: str | bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``).

    Each count is a little-endian run of 5-bit groups in characters from 48 (``'0'``); the
    sixth bit says another group follows and, on the last group, the fifth is the sign.
    From the fourth count on, counts are stored as the difference to the one two before.
    Raises GeometryError on a string that ends inside a count or on a negative count.
    """
    data = s.encode("ascii", "replace") if isinstance(s, str) else bytes(s)
    counts: list[int] = []
    p, n = 0, len(data)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise GeometryError("the RLE 'counts' string ends inside a number")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise GeometryError(f"the RLE 'counts' string has a bad character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x -= 1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise GeometryError("the RLE 'counts' string holds a negative run length")
        counts.append(x)
    return counts


def rle_to_mask(seg: dict, height: int, width: int) -> np.ndarray:
    """Decode a COCO RLE (``counts`` as a list or a compressed string) to ``(H, W)`` bool.

    The RLE must be as large as its image (``size`` is ``[height, width]``), within the
    ``max_image_pixels`` setting, and its runs must not cover more than its pixels: a
    claimed 30000x30000 mask, or runs that overflow it, are refused before any decoding.
    Raises GeometryError with the reason.
    """
    from core.config import env_name, get_settings

    counts = seg.get("counts")
    size = seg.get("size") or [height, width]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise GeometryError(f"RLE 'size' must be [height, width] in pixels, got {size!r:.60}")
    h, w = size
    max_pixels = get_settings().max_image_pixels
    if h * w > max_pixels:
        raise GeometryError(
            f"the RLE claims {w}x{h} pixels, more than the limit of {max_pixels:,} "
            f"(setting {env_name('max_image_pixels')})"
        )
    if (h, w) != (height, width):
        raise GeometryError(
            f"the RLE is {w}x{h} pixels but its image is {width}x{height}; "
            "a mask must cover its image exactly"
        )
    if isinstance(counts, (str, bytes)):
        runs = rle_string_to_counts(counts)
    elif isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise GeometryError("RLE 'counts' must hold run lengths (whole numbers, 0 or more)")
        runs = counts
    else:
        raise GeometryError(f"RLE 'counts' must be a list or a string, got {type(counts).__name__}")
    if sum(runs) > h * w:
        raise GeometryError(
            f"the RLE runs cover {sum(runs):,} pixels but its {w}x{h} mask has {h * w:,}"
        )
    # runs alternate background, foreground, ... over the pixels in column-major order
    values = np.arange(len(runs)) % 2 == 1
    flat = np.zeros(h * w, dtype=bool)
    flat[: sum(runs)] = np.repeat(values, runs)
    return flat.reshape(w, h).T


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE (``counts`` as str) of a ``(H, W)`` bool mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "size": [int(mask.shape[0]), int(mask.shape[1])],
        "counts": rle["counts"].decode("ascii"),
    }


def segmentation_to_shape(
    seg: Any, bbox: Any, height: int, width: int
) -> tuple[Shape, list[float]]:
    """One annotation's geometry as a shape and its xyxy box; raises GeometryError with the reason."""
    if isinstance(seg, list) and seg:
        if not isinstance(seg[0], list) and all(isinstance(v, (int, float)) for v in seg):
            seg = [seg]  # one flat polygon, seen in the wild
        return shape_from_flat_rings(seg)
    if isinstance(seg, dict):
        mask = rle_to_mask(seg, height, width)
        shape = mask_to_shape(mask, tolerance=0, min_area=0)
        if shape is None:
            raise GeometryError("the RLE mask is empty")
        return shape, shape.bbox.tolist()
    if isinstance(bbox, list) and len(bbox) == 4:
        x, y, w, h = (float(v) for v in bbox)
        if w > 0 and h > 0:
            return Shape.from_box(x, y, x + w, y + h), [x, y, x + w, y + h]
    raise GeometryError("no segmentation and no usable bbox")


def parse(
    data: dict, resolver: LabelResolver, *, source: str
) -> tuple[list[ImageRecord], ParseReport]:
    """Records from a loaded COCO dict.

    Unknown category names are collected in ``resolver.unknown`` (the caller raises);
    categories that no annotation uses are not resolved but noted in ``report.notes``;
    annotations that cannot be used are listed in the report, and the rest goes on.
    Extra keys ``split``, ``sha256`` on images and ``attributes``, ``score`` on
    annotations (as our exports write them) are read back.

    Raises:
        FormatError: the file's structure is not COCO (missing ``images``, wrong types).
    """
    if not isinstance(data, dict):
        raise FormatError(f"{source}: a COCO file holds a JSON object, got {type(data).__name__}")
    images = _require_list(data, "images", source)
    annotations = _require_list(data, "annotations", source, required=False)
    categories = _require_list(data, "categories", source, required=bool(annotations))
    report = ParseReport()

    cat_names: dict[int, str] = {}
    for i, c in enumerate(categories):
        where = f"{source}: categories[{i}]"
        cat_names[int(_field(c, "id", int, where))] = str(_field(c, "name", str, where))
    used = {a.get("category_id") for a in annotations if isinstance(a, dict)}
    resolved = {}
    for cid, name in cat_names.items():
        if cid not in used:  # Roboflow's parent category, an empty _background_: no labels
            report.notes.append(
                f"{source}: category {name!r} (id {cid}) is used by no annotation; ignored"
            )
        elif name not in BACKGROUND_NAMES:
            cls = resolver.resolve(name)
            resolved[cid] = None if cls is None else cls.id

    by_id: dict[Any, dict] = {}
    for i, im in enumerate(images):
        where = f"{source}: images[{i}]"
        iid = _field(im, "id", (int, str), where)
        _field(im, "file_name", str, where)
        for k in ("width", "height"):
            if _field(im, k, (int, float), where) <= 0:
                raise FormatError(f"{where}: the field {k!r} must be positive, got {im[k]!r}")
        if iid in by_id:
            raise FormatError(f"{where}: image id {iid!r} appears twice; ids must be unique")
        by_id[iid] = im

    per_image: dict[Any, list[tuple[Shape, int, float, dict, list[float]]]] = defaultdict(list)
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise FormatError(f"{source}: annotations[{i}] must be an object")
        aid = ann.get("id", f"#{i}")
        im = by_id.get(ann.get("image_id"))
        if im is None:
            report.failed.append(
                f"{source}: annotation {aid}: image_id {ann.get('image_id')!r} is not in 'images'"
            )
            continue
        where = f"{source}: annotation {aid} (image {im['file_name']!r})"
        cid = ann.get("category_id")
        if cid not in cat_names:
            report.failed.append(f"{where}: category_id {cid!r} is not in 'categories'")
            continue
        if cat_names[cid] in BACKGROUND_NAMES:
            report.skipped.append(f"{where}: uses the background category {cat_names[cid]!r}")
            continue
        class_id = resolved[cid]
        if class_id is None:
            continue  # unknown label: collected by the resolver, the caller stops the import
        try:
            shape, box = segmentation_to_shape(
                ann.get("segmentation"), ann.get("bbox"), int(im["height"]), int(im["width"])
            )
        except (GeometryError, TypeError, ValueError) as e:
            report.failed.append(f"{where}: {e}; fix or delete this annotation")
            continue
        attrs = dict(ann["attributes"]) if isinstance(ann.get("attributes"), dict) else {}
        if ann.get("iscrowd") in (1, True):
            attrs["iscrowd"] = True
        score = ann.get("score", 1.0)
        per_image[im["id"]].append((shape, class_id, float(score), attrs, box))

    records = []
    for im in images:
        items = per_image.get(im["id"], [])
        inst = (
            Instances(
                [it[0] for it in items],
                [it[1] for it in items],
                scores=[it[2] for it in items],
                attributes=[it[3] for it in items],
                boxes=[it[4] for it in items],
            )
            if items
            else Instances.empty()
        )
        records.append(
            ImageRecord(
                file_name=im["file_name"],
                width=int(im["width"]),
                height=int(im["height"]),
                instances=inst,
                split=im.get("split") if im.get("split") in SPLITS else None,
                sha256=im.get("sha256") if isinstance(im.get("sha256"), str) else None,
                meta={"coco_id": im["id"]},
            )
        )
    return records, report


def parse_results(
    results: Any, resolver: LabelResolver, *, source: str, images: dict | None = None
) -> tuple[list[ImageRecord], ParseReport]:
    """Records from a COCO results file (Detectron2's and MMDetection's ``*.segm.json``): a
    list of ``{image_id, category_id, segmentation | bbox, score}``, one record per photo
    with the instances' scores.

    With ``images`` (the loaded COCO file the results refer to), ``image_id`` and
    ``category_id`` are looked up in its ``images`` and ``categories``. Without it,
    ``image_id`` names the photo by its file-name stem (``meta["match"] = "stem"``; the
    convention of Ultralytics' ``save_json``) and ``category_id`` is its own label (``"1"``,
    resolved through the map file); record sizes are then 0 and an RLE keeps its own size.

    Raises:
        FormatError: the content is not a list of result objects.
    """
    if isinstance(results, dict) and isinstance(results.get("annotations"), list):
        results = results["annotations"]  # a results list wrapped as a COCO file
    if not isinstance(results, list):
        raise FormatError(
            f"{source}: a COCO results file is a JSON list of {{image_id, category_id, "
            f"segmentation, score}} objects, got {type(results).__name__}"
        )
    report = ParseReport()
    by_id: dict[Any, dict] = {}
    cat_names: dict[Any, str] | None = None
    if images is not None:
        if not isinstance(images, dict):
            raise FormatError(f"{source}: the images file must hold a COCO JSON object")
        for i, im in enumerate(_require_list(images, "images", source)):
            where = f"{source}: images[{i}]"
            by_id[_field(im, "id", (int, str), where)] = im
            _field(im, "file_name", str, where)
        cat_names = {}
        for i, c in enumerate(_require_list(images, "categories", source)):
            where = f"{source}: categories[{i}]"
            cat_names[_field(c, "id", int, where)] = str(_field(c, "name", str, where))
    resolved: dict[Any, int | None] = {}
    per_image: dict[Any, list[tuple[Shape, int, float]]] = defaultdict(list)
    for i, r in enumerate(results):
        where = f"{source}: result {i}"
        if not isinstance(r, dict):
            raise FormatError(f"{where} must be an object, got {type(r).__name__}")
        iid, cid, score = r.get("image_id"), r.get("category_id"), r.get("score")
        if isinstance(iid, bool) or not isinstance(iid, (int, str)):
            report.failed.append(f"{where}: 'image_id' must be a number or a name, got {iid!r}")
            continue
        im = by_id.get(iid) if images is not None else None
        if images is not None and im is None:
            report.failed.append(f"{where}: image_id {iid!r} is not in the images file")
            continue
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            report.failed.append(f"{where}: 'score' must be a number from 0 to 1, got {score!r}")
            continue
        if cid not in resolved:
            if cat_names is not None and cid not in cat_names:
                report.failed.append(f"{where}: category_id {cid!r} is not in 'categories'")
                continue
            name = cat_names[cid] if cat_names is not None else str(cid)
            cls = None if name in BACKGROUND_NAMES else resolver.resolve(name)
            resolved[cid] = None if cls is None else cls.id
        if resolved[cid] is None:
            continue  # unknown label: collected by the resolver, the caller stops the import
        seg = r.get("segmentation")
        if im is not None:
            h, w = int(im.get("height") or 0), int(im.get("width") or 0)
        else:
            size = seg.get("size") if isinstance(seg, dict) else None
            h, w = size if isinstance(size, list) and len(size) == 2 else (0, 0)
        try:
            shape, _ = segmentation_to_shape(seg, r.get("bbox"), h, w)
        except (GeometryError, TypeError, ValueError) as e:
            report.failed.append(f"{where} (image {iid!r}): {e}; result left out")
            continue
        per_image[iid].append((shape, resolved[cid], float(score)))
    records = []
    for iid, items in per_image.items():
        inst = Instances(
            [it[0] for it in items], [it[1] for it in items], scores=[it[2] for it in items]
        )
        im = by_id.get(iid)
        if im is not None:
            records.append(
                ImageRecord(
                    im["file_name"],
                    int(im.get("width") or 0),
                    int(im.get("height") or 0),
                    inst,
                    meta={"coco_id": iid},
                )
            )
        else:
            records.append(
                ImageRecord(str(iid), 0, 0, inst, meta={"coco_id": iid, "match": "stem"})
            )
    return records, report


# -- build ---------------------------------------------------------------------


def dump(data: dict, path: str | Path) -> None:
    """Write a COCO dict as JSON. ``json.dumps`` runs the C encoder; ``json.dump`` to a file
    goes through the pure-Python ``iterencode`` and is several times slower on big exports."""
    Path(path).write_text(json.dumps(data), encoding="utf-8")


def load(path: str | Path) -> dict:
    """Read a COCO JSON file; raises FormatError naming the file when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError as e:
        raise FormatError(f"{path}: the file does not exist") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: not valid JSON ({e}); is this a COCO export?") from e


def categories(taxonomy: Taxonomy) -> list[dict]:
    """The whole taxonomy as COCO categories: id = taxonomy id, supercategory = group."""
    return [{"id": c.id, "name": c.name, "supercategory": c.group} for c in taxonomy]


def shape_segmentation(shape: Shape, height: int, width: int) -> tuple[list | dict, float]:
    """COCO segmentation and area: polygon lists, or compressed RLE when the shape has holes."""
    if shape.has_holes:
        mask = shape_to_mask(shape, height, width)
        return mask_to_rle(mask), float(mask.sum())
    return [p.exterior.ravel().tolist() for p in shape.polygons], shape.area


def _ring_stats(shapes: list[Shape]) -> tuple[np.ndarray, np.ndarray]:
    """Per shape: polygon area (exteriors only, shapes without holes) and xyxy bbox, batched.

    One numpy pass over all rings of an image: a per-ring ``np.roll`` shoelace costs more
    than the whole export at 100,000 polygons.
    """
    rings = [p.exterior for s in shapes for p in s.polygons]
    owner = np.repeat(np.arange(len(shapes)), [len(s.polygons) for s in shapes])
    lens = np.array([len(r) for r in rings])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    pts = np.concatenate(rings)
    nxt = np.arange(len(pts)) + 1
    nxt[starts + lens - 1] = starts  # each ring's last point wraps to its first
    cross = pts[:, 0] * pts[nxt, 1] - pts[:, 1] * pts[nxt, 0]
    ring_area = 0.5 * np.abs(np.add.reduceat(cross, starts))
    area = np.bincount(owner, weights=ring_area, minlength=len(shapes))
    lo = np.minimum.reduceat(pts, starts)
    hi = np.maximum.reduceat(pts, starts)
    first = np.concatenate([[0], np.cumsum([len(s.polygons) for s in shapes])[:-1]])
    box = np.concatenate([np.minimum.reduceat(lo, first), np.maximum.reduceat(hi, first)], axis=1)
    return area, box


def build(
    records: Iterable[ImageRecord], taxonomy: Taxonomy, *, include_attributes: bool = True
) -> dict:
    """A COCO dict for ``records``; categories are the whole taxonomy.

    Images carry extra ``split`` and ``sha256`` keys when known; annotations carry
    ``attributes`` (with ``include_attributes``) and ``score`` when it is not 1.

    Raises:
        ExportRefused: a coordinate or score that is not finite, or a point far outside its
            image (``exports.bounds``).
    """
    records = check_records(records)
    images, anns = [], []
    ann_id = 0
    for img_id, rec in enumerate(records, start=1):
        entry: dict[str, Any] = {
            "id": img_id,
            "file_name": record_file_name(rec),  # never a way out of the images folder
            "width": int(rec.width),
            "height": int(rec.height),
        }
        if rec.split:
            entry["split"] = rec.split
        if rec.sha256:
            entry["sha256"] = rec.sha256
        images.append(entry)
        inst = rec.instances
        if not len(inst):
            continue
        areas, boxes = _ring_stats(inst.shapes)
        class_ids = inst.class_ids.tolist()
        scores = inst.scores.tolist()
        for k, shape in enumerate(inst.shapes):
            ann_id += 1
            if shape.has_holes:
                seg, area = shape_segmentation(shape, rec.height, rec.width)
            else:
                seg, area = [p.exterior.ravel().tolist() for p in shape.polygons], float(areas[k])
            x0, y0, x1, y1 = boxes[k].tolist()
            ann: dict[str, Any] = {
                "id": ann_id,
                "image_id": img_id,
                "category_id": class_ids[k],
                "segmentation": seg,
                "area": area,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0,
            }
            if include_attributes:
                ann["attributes"] = dict(inst.attributes[k])
            if scores[k] != 1.0:
                ann["score"] = scores[k]
            anns.append(ann)
    return {
        "info": {"description": "exported by panelbeater"},
        "images": images,
        "annotations": anns,
        "categories": categories(taxonomy),
    }
