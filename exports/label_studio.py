"""Label Studio tasks: build them (with the labelling config) and parse Label Studio exports.

Geometry in Label Studio results is in percent of the image's width and height
(``x_pct = 100 * x / original_width``). A shape with one polygon and no holes becomes a
``polygonlabels`` region; a shape with holes or several parts cannot be a Label Studio
polygon, so it becomes a ``brushlabels`` region in Label Studio's own brush RLE (the
encoder and decoder of ``label_studio_sdk.converter.brush``), rasterised at pixel centres.
Per-region attributes are ``choices``/``textarea`` results sharing the region's id.

Predictions travel in ``record.meta["predictions"]``: one :class:`Instances` with scores.
Each instance's model version is its ``data["model_version"]`` when that column exists, else
``record.meta["model_version"]``; each version becomes one Label Studio prediction. Parse
puts a task's last prediction back as an :class:`Instances` in ``meta["predictions"]`` with
``meta["model_version"]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np

from core.geometry import GeometryError, Shape, mask_to_shape, shape_to_mask
from core.instances import SEVERITIES, Instances
from core.records import SPLITS, ImageRecord, LabelResolver, ParseReport
from core.taxonomy import Taxonomy

from .bounds import check_records
from .errors import FormatError, ImageReadError
from .file_names import record_file_name
from .image_files import read_image_info, resolve_inside

IMAGE = "image"
POLYGON = "polygon"
BRUSH = "brush"
GEOMETRY_TYPES = ("polygonlabels", "brushlabels", "rectanglelabels")
DEFAULT_MODEL_VERSION = "panelbeater"
# Label Studio prefixes uploaded files with 8 hex digits and a dash
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
#: Where Label Studio serves files under its ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``.
LOCAL_FILES_URL = "/data/local-files/?d="


def image_url(path: str | Path, document_root: str | Path, base_url: str = "") -> str:
    """The URL Label Studio loads the photo at ``path`` from: ``base_url`` followed by the
    photo's path below ``document_root`` when ``base_url`` is given (a web server that serves
    that folder), else Label Studio's own ``/data/local-files/?d=<that path>`` (served when
    Label Studio runs with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to ``document_root``). Both paths are
    resolved first, so symbolic links and ``..`` cannot lead out.

    Raises:
        ValueError: the photo does not lie below ``document_root``.
    """
    rel = Path(path).resolve().relative_to(Path(document_root).resolve()).as_posix()
    if rel == ".":
        raise ValueError(f"{path} is the document root itself, not a photo below it")
    if base_url:
        return f"{base_url.rstrip('/')}/{quote(rel)}"
    return LOCAL_FILES_URL + quote(rel)


# -- config --------------------------------------------------------------------


def labeling_config(taxonomy: Taxonomy) -> str:
    """Label Studio XML: Image, PolygonLabels and BrushLabels with every class, and
    per-region controls for severity, occluded, fake (with a note) and the part it lies on."""

    def labels(tag: str, name: str) -> str:
        items = "\n".join(
            f"    <Label value={quoteattr(c.name)} background={quoteattr(c.color)}"
            f" hint={quoteattr(c.display_name)}/>"
            for c in taxonomy
        )
        return f'  <{tag} name="{name}" toName="{IMAGE}">\n{items}\n  </{tag}>'

    severity = "".join(f'<Choice value="{s}"/>' for s in SEVERITIES)
    parts = "".join(f"<Choice value={quoteattr(c.name)}/>" for c in taxonomy.group("part"))
    return "\n".join(
        [
            "<View>",
            f'  <Image name="{IMAGE}" value="$image" zoom="true"/>',
            labels("PolygonLabels", POLYGON),
            labels("BrushLabels", BRUSH),
            '  <View visibleWhen="region-selected">',
            f'    <Choices name="severity" toName="{IMAGE}" perRegion="true" choice="single-radio">'
            f"{severity}</Choices>",
            f'    <Choices name="occluded" toName="{IMAGE}" perRegion="true"><Choice value="occluded"/></Choices>',
            f'    <Choices name="fake" toName="{IMAGE}" perRegion="true"><Choice value="fake"/></Choices>',
            f'    <TextArea name="fake_note" toName="{IMAGE}" perRegion="true" editable="true" maxSubmissions="1"/>',
            f'    <Choices name="part_id" toName="{IMAGE}" perRegion="true" choice="single">{parts}</Choices>',
            "  </View>",
            "</View>",
        ]
    )


# -- brush RLE ------------------------------------------------------------------


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE (RGBA, alpha 255 inside) of a ``(H, W)`` bool mask."""
    from label_studio_sdk.converter.brush import mask2rle

    return [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]


def brush_rle_to_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool mask of a Label Studio brush RLE (alpha channel > 0)."""
    from label_studio_sdk.converter.brush import decode_rle

    flat = decode_rle(rle)
    if flat.size != height * width * 4:
        raise GeometryError(
            f"brush RLE holds {flat.size} values, expected {height}x{width}x4 = {height * width * 4}"
        )
    return flat.reshape(height, width, 4)[:, :, 3] > 0


# -- build ---------------------------------------------------------------------


def _attribute_results(rid: str, attrs: dict, taxonomy: Taxonomy, value: dict) -> list[dict]:
    out = []

    def add(from_name: str, kind: str, payload: dict) -> None:
        out.append(
            {
                "id": rid,
                "type": kind,
                "from_name": from_name,
                "to_name": IMAGE,
                "value": {**value, **payload},
            }
        )

    if attrs.get("severity") in SEVERITIES:
        add("severity", "choices", {"choices": [attrs["severity"]]})
    if attrs.get("occluded"):
        add("occluded", "choices", {"choices": ["occluded"]})
    if attrs.get("fake"):
        add("fake", "choices", {"choices": ["fake"]})
    if attrs.get("fake_note"):
        add("fake_note", "textarea", {"text": [str(attrs["fake_note"])]})
    part = attrs.get("part_id")
    if part is not None and part in taxonomy:
        add("part_id", "choices", {"choices": [taxonomy.by_id(part).name]})
    return out


def instance_results(
    inst: Instances, width: int, height: int, taxonomy: Taxonomy, *, prefix: str, with_scores: bool
) -> list[dict]:
    """Label Studio results for instances: one region each, plus its attribute results."""
    results = []
    sx, sy = 100.0 / width, 100.0 / height
    for k, shape in enumerate(inst.shapes):
        rid = f"{prefix}{k}"
        name = taxonomy.by_id(int(inst.class_ids[k])).name
        if len(shape.polygons) == 1 and not shape.has_holes:
            pts = (shape.polygons[0].exterior * [sx, sy]).tolist()
            value = {"points": pts, "closed": True}
            region = {
                "type": "polygonlabels",
                "from_name": POLYGON,
                "value": {**value, "polygonlabels": [name]},
            }
        else:
            rle = mask_to_brush_rle(shape_to_mask(shape, height, width))
            value = {"format": "rle", "rle": rle}
            region = {
                "type": "brushlabels",
                "from_name": BRUSH,
                "value": {**value, "brushlabels": [name]},
            }
        region.update(
            id=rid,
            to_name=IMAGE,
            original_width=int(width),
            original_height=int(height),
            image_rotation=0,
        )
        if with_scores:
            region["score"] = float(inst.scores[k])
        results.append(region)
        results += _attribute_results(rid, inst.attributes[k], taxonomy, value)
    return results


def _prediction_sets(rec: ImageRecord) -> list[tuple[str, Instances]]:
    """``(model_version, instances)`` per version in ``record.meta["predictions"]``, in the
    order the versions first appear (see the module docstring)."""
    preds = rec.meta.get("predictions")
    if preds is None:
        return []
    if not isinstance(preds, Instances):
        raise TypeError(
            f"{rec.file_name}: meta['predictions'] must be an Instances, got {type(preds).__name__}"
        )
    default = str(rec.meta.get("model_version") or DEFAULT_MODEL_VERSION)
    versions = [str(v or default) for v in preds.data.get("model_version", [default] * len(preds))]
    return [
        (v, preds[np.array([w == v for w in versions], dtype=bool)])
        for v in dict.fromkeys(versions)
    ]


def build_tasks(
    records: Iterable[ImageRecord],
    taxonomy: Taxonomy,
    *,
    include_predictions: bool = False,
    image_url_fn: Callable[[ImageRecord], str] | None = None,
) -> list[dict]:
    """Label Studio import tasks, one per record.

    ``data.image`` is ``image_url_fn(record)`` (default: the record's file name); ``data``
    also keeps file_name, size, sha256 and split so a round trip loses nothing.

    Raises:
        ExportRefused: a coordinate or score that is not finite, or a point far outside its
            image (``exports.bounds``), in the annotations or the predictions.
    """
    records = check_records(records, predictions=include_predictions)
    url = image_url_fn or record_file_name
    tasks = []
    for rec in records:
        data: dict[str, Any] = {
            IMAGE: url(rec),
            "file_name": record_file_name(rec),  # never a way out of the images folder
            "width": rec.width,
            "height": rec.height,
        }
        if rec.sha256:
            data["sha256"] = rec.sha256
        if rec.split:
            data["split"] = rec.split
        task: dict[str, Any] = {
            "data": data,
            "annotations": [
                {
                    "result": instance_results(
                        rec.instances,
                        rec.width,
                        rec.height,
                        taxonomy,
                        prefix="a",
                        with_scores=False,
                    )
                }
            ],
        }
        if include_predictions:
            preds = []
            for version, inst in _prediction_sets(rec):
                preds.append(
                    {
                        "model_version": version,
                        "score": float(np.mean(inst.scores)),
                        "result": instance_results(
                            inst,
                            rec.width,
                            rec.height,
                            taxonomy,
                            prefix=f"p{len(preds)}_",
                            with_scores=True,
                        ),
                    }
                )
            if preds:
                task["predictions"] = preds
        tasks.append(task)
    return tasks


# -- parse ---------------------------------------------------------------------


def _file_name(data: dict) -> str:
    if isinstance(data.get("file_name"), str):
        return data["file_name"]
    url = data.get(IMAGE)
    if not isinstance(url, str):
        url = next((v for v in data.values() if isinstance(v, str)), "")
    parsed = urlparse(url)
    local = parse_qs(parsed.query).get("d")  # /data/local-files/?d=folder/x.jpg
    name = unquote(local[0] if local else parsed.path).rsplit("/", 1)[-1]
    if "/data/upload/" in parsed.path:
        name = _UPLOAD_PREFIX.sub("", name)
    return name


def _region_shape(r: dict, width: int, height: int) -> Shape:
    v = r.get("value") or {}
    kind = r["type"]
    if kind == "polygonlabels":
        pts = np.asarray(v.get("points"), dtype=np.float64)
        if pts.ndim != 2 or pts.shape[-1] != 2:
            raise GeometryError(f"'points' must be [[x, y], ...] in percent, got shape {pts.shape}")
        return Shape.from_ring(pts * [width / 100.0, height / 100.0])
    if kind == "rectanglelabels":
        x, y, w, h = (
            float(v[k]) * s / 100.0
            for k, s in (("x", width), ("y", height), ("width", width), ("height", height))
        )
        if w <= 0 or h <= 0:
            raise GeometryError(f"rectangle has width {w} and height {h}; both must be positive")
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
        a = math.radians(
            float(v.get("rotation", 0.0))
        )  # Label Studio rotates about the top-left corner
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return Shape.from_ring(corners @ rot.T + [x, y])
    if v.get("format", "rle") != "rle" or "rle" not in v:
        raise GeometryError(
            "brush region has no 'rle' (only Label Studio's RLE brush format is read)"
        )
    shape = mask_to_shape(brush_rle_to_mask(v["rle"], height, width), tolerance=0, min_area=0)
    if shape is None:
        raise GeometryError("the brush mask is empty")
    return shape


def _attributes(extra: list[dict], resolver: LabelResolver) -> dict:
    attrs: dict[str, Any] = {}
    for r in extra:
        v = r.get("value") or {}
        name = r.get("from_name")
        choices = v.get("choices") or []
        if name == "severity" and choices:
            attrs["severity"] = choices[0]
        elif name in ("occluded", "fake") and choices:
            attrs[name] = True
        elif name == "fake_note" and v.get("text"):
            attrs["fake_note"] = "\n".join(v["text"])
        elif name == "part_id" and choices:
            cls = resolver.taxonomy.get(choices[0])
            if cls is not None:
                attrs["part_id"] = cls.id
    return attrs


def parse_results(
    results: list, width: int, height: int, resolver: LabelResolver, report: ParseReport, where: str
) -> Instances:
    """Instances from one annotation's (or prediction's) result list."""
    regions: dict[str, dict] = {}
    extra: dict[str, list[dict]] = {}
    for r in results:
        if not isinstance(r, dict) or "type" not in r:
            report.failed.append(f"{where}: a result is not an object with 'type'")
            continue
        if r["type"] in GEOMETRY_TYPES:
            regions[str(r.get("id", len(regions)))] = r
        else:
            extra.setdefault(str(r.get("id")), []).append(r)
    shapes, ids, scores, attrs = [], [], [], []
    for rid, r in regions.items():
        rwhere = f"{where}, region {rid}"
        labels = (r.get("value") or {}).get(r["type"]) or []
        if len(labels) != 1:
            report.failed.append(f"{rwhere}: expected exactly one label, got {labels}")
            continue
        w = int(r.get("original_width") or width)
        h = int(r.get("original_height") or height)
        try:
            shape = _region_shape(r, w, h)
        except (GeometryError, KeyError, TypeError, ValueError) as e:
            report.failed.append(f"{rwhere}: {e}; fix or delete this region")
            continue
        if (w, h) != (width, height) and width and height:  # task size differs: rescale
            shape = shape.scaled(width / w, height / h)
        cls = resolver.resolve(str(labels[0]))
        if cls is None:
            continue
        shapes.append(shape)
        ids.append(cls.id)
        scores.append(float(r.get("score", 1.0)))
        attrs.append(_attributes(extra.get(rid, []), resolver))
    return Instances(shapes, ids, scores=scores, attributes=attrs) if shapes else Instances.empty()


def _size(task: dict, data: dict) -> tuple[int, int]:
    for group in ("annotations", "predictions"):
        for a in task.get(group) or []:
            for r in a.get("result") or []:
                if isinstance(r, dict) and r.get("original_width") and r.get("original_height"):
                    return int(r["original_width"]), int(r["original_height"])
    return int(data.get("width") or 0), int(data.get("height") or 0)


def parse(
    tasks: Any, resolver: LabelResolver, *, source: str, images_dir: str | Path | None = None
) -> tuple[list[ImageRecord], ParseReport]:
    """Records from a Label Studio JSON export (or our own tasks).

    Of several non-cancelled annotations on a task the last one is used (reported).
    With ``images_dir``, images are read for size and sha256; a missing file is reported
    and its task left out. Predictions go to ``record.meta["predictions"]``.
    """
    if isinstance(tasks, dict) and isinstance(tasks.get("tasks"), list):
        tasks = tasks["tasks"]
    if not isinstance(tasks, list):
        raise FormatError(
            f"{source}: a Label Studio export is a JSON list of tasks, got {type(tasks).__name__}; "
            "export with Label Studio's 'JSON' format"
        )
    report = ParseReport()
    records = []
    images_dir = Path(images_dir) if images_dir is not None else None
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise FormatError(f"{source}: task #{i} must be an object with a 'data' object")
        data = task["data"]
        fname = _file_name(data)
        where = f"{source}: task {task.get('id', '#' + str(i))} ({fname!r})"
        if not fname:
            report.failed.append(f"{where}: the task's data has no image URL or file name")
            continue
        width, height = _size(task, data)
        sha = data.get("sha256") if isinstance(data.get("sha256"), str) else None
        meta: dict[str, Any] = {"label_studio_id": task.get("id")}
        if images_dir is not None:
            try:
                path = resolve_inside(images_dir, fname)
                info = read_image_info(path)
            except ImageReadError as e:
                report.skipped.append(f"{where}: {e}; task left out")
                continue
            width, height, sha = info.width, info.height, info.sha256
            meta["path"] = str(path)
        if not (width and height):
            report.failed.append(f"{where}: image size unknown (no results and no images folder)")
            continue
        anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if len(anns) > 1:
            report.skipped.append(f"{where}: {len(anns)} annotations; the last one was used")
        inst = (
            parse_results(anns[-1].get("result") or [], width, height, resolver, report, where)
            if anns
            else Instances.empty()
        )
        # Label Studio's JSON export lists predictions by id only; full ones come from the API
        preds = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
        if preds:
            p = preds[-1]
            meta["predictions"] = parse_results(
                p.get("result") or [], width, height, resolver, report, where + " prediction"
            )
            meta["model_version"] = p.get("model_version")
        split = data.get("split") if data.get("split") in SPLITS else None
        records.append(ImageRecord(fname, width, height, inst, split=split, sha256=sha, meta=meta))
    return records, report


def parse_predictions(
    tasks: Any, resolver: LabelResolver, *, source: str
) -> tuple[list[ImageRecord], ParseReport]:
    """Records of a Label Studio export's predictions: for each task with one, the last
    prediction's instances (with their region scores) as the record's instances.

    Annotations are left out (their labels are not resolved), so only the predictions' labels
    must be known. Sizes come from the results' ``original_width``/``original_height`` and
    coordinates are in those pixels (``meta["relative"] = True``: scale them to the photo's
    size); ``meta["model_version"]`` keeps Label Studio's model version. The photo is named by
    the task's file name and ``sha256`` when the task has one.
    """
    if isinstance(tasks, dict) and isinstance(tasks.get("tasks"), list):
        tasks = tasks["tasks"]
    by_id_only = 0
    if isinstance(tasks, list):
        by_id_only = sum(
            1
            for t in tasks
            if isinstance(t, dict)
            and t.get("predictions")
            and not any(isinstance(p, dict) for p in t["predictions"])
        )
        tasks = [
            {**t, "annotations": []} if isinstance(t, dict) and t.get("predictions") else t
            for t in tasks
            if not isinstance(t, dict) or t.get("predictions")
        ]
    records, report = parse(tasks, resolver, source=source)
    if by_id_only:
        report.skipped.append(
            f"{source}: {by_id_only} task(s) list their predictions by id only; export them "
            "with their results (Label Studio's API, or the JSON export with predictions)"
        )
    out = []
    for rec in records:
        preds = rec.meta.get("predictions")
        if isinstance(preds, Instances):
            rec.instances = preds
            rec.meta = {k: v for k, v in rec.meta.items() if k != "predictions"}
            rec.meta["relative"] = True
            out.append(rec)
    return out, report
