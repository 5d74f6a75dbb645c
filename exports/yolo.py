"""Ultralytics YOLO segmentation datasets: write one from records, and read one back.

Layout written (what ``ultralytics`` expects for ``task=segment``)::

    OUT/data.yaml                   train/val/test folders, names {index: class name}
    OUT/images/<split>/<name>.jpg
    OUT/labels/<split>/<name>.txt   one line per instance: "<index> x1 y1 x2 y2 ..."

Coordinates are normalised by the image width and height, 6 decimals, clipped to [0, 1]
(Ultralytics rejects a label file with coordinates outside). A YOLO line holds one ring, so an
instance with several parts or holes is merged into one ring joined by zero-width bridges
at the closest points, exactly as ``ultralytics.data.converter.merge_multi_segment`` does
for COCO; the even-odd fill of the merged ring is the original region.

data.yaml holds no ``path``: Ultralytics then reads the split folders relative to the folder
data.yaml lies in (``check_det_dataset``), so the dataset trains wherever it is unzipped or
moved. A relative ``path`` such as ``.`` would be read against the working directory, and an
absolute one names the folder it was written in (a server's temporary folder for a download).

Class indices are contiguous: the classes of ``group`` (so index = the model head's
index) or of the whole taxonomy, in taxonomy order; ``names`` in data.yaml records them.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.geometry import GeometryError, Polygon, Shape, as_ring
from core.instances import Instances
from core.records import SPLITS, ImageRecord, LabelResolver, ParseReport
from core.taxonomy import LabelClass, Taxonomy

from .bounds import check_records
from .errors import FormatError, ImageReadError
from .file_names import record_file_name, safe_base_name
from .image_files import list_image_files, read_image_info, read_regular_file, resolve_inside
from .rings import fast_ring
from .splits import split_for


@dataclass
class YoloExport:
    """What :func:`write` wrote: the data.yaml path and counts per split."""

    data_yaml: Path
    names: dict[int, str]
    images: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    instances: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    instances_left_out: int = 0


# -- merging parts into one ring -------------------------------------------------


def _closest_pair(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    return int(i), int(j)


def merge_rings(rings: list[np.ndarray]) -> np.ndarray:
    """Join rings into one ``(K, 2)`` ring through their closest points.

    Same walk as Ultralytics' ``merge_multi_segment``: go forward through the rings,
    entering each at the point closest to the previous ring, then come back through the
    middle rings to close the loop. With one ring, it is returned unchanged.
    """
    if len(rings) == 1:
        return rings[0]
    segs = [np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in rings]
    n = len(segs)
    links: list[list[int]] = [[] for _ in range(n)]
    for i in range(1, n):
        a, b = _closest_pair(segs[i - 1], segs[i])
        links[i - 1].append(a)
        links[i].append(b)
    out = []
    for i, idx in enumerate(links):
        if len(idx) == 2 and idx[0] > idx[1]:
            idx = [len(segs[i]) - 1 - x for x in idx]
            segs[i] = segs[i][::-1]
        segs[i] = np.roll(segs[i], -idx[0], axis=0)
        segs[i] = np.concatenate([segs[i], segs[i][:1]])
        if i in (0, n - 1):
            out.append(segs[i])
        else:
            out.append(segs[i][: idx[1] - idx[0] + 1])
    for i in range(n - 2, 0, -1):
        idx = links[i]  # the original indices, as Ultralytics uses them on the way back
        out.append(segs[i][abs(idx[1] - idx[0]) :])
    return np.concatenate(out)


def shape_ring(shape: Shape) -> np.ndarray:
    """The one ring YOLO stores for a shape: parts and holes merged, in image pixels."""
    rings = [r for p in shape.polygons for r in p.rings()]
    return merge_rings(rings)


# -- write ---------------------------------------------------------------------


def export_classes(taxonomy: Taxonomy, group: str | None = None) -> list[LabelClass]:
    return list(taxonomy.group(group)) if group else list(taxonomy)


@functools.cache
def _line_format(n_values: int) -> str:
    return "%d" + " %.6f" * n_values


def label_lines(
    inst: Instances, width: int, height: int, index_of: dict[int, int]
) -> tuple[list[str], int]:
    """YOLO label lines for an image's instances and the number left out (class not exported)."""
    rings, idxs, left_out = [], [], 0
    for shape, cid in zip(inst.shapes, inst.class_ids.tolist(), strict=True):
        idx = index_of.get(cid)
        if idx is None:
            left_out += 1
            continue
        single = len(shape.polygons) == 1 and not shape.polygons[0].holes
        rings.append(shape.polygons[0].exterior if single else shape_ring(shape))
        idxs.append(idx)
    if not rings:
        return [], left_out
    # one numpy pass and one tolist per image: per-ring calls cost more than the formatting
    vals = np.clip(np.concatenate(rings) * [1.0 / width, 1.0 / height], 0.0, 1.0).ravel().tolist()
    lines, start = [], 0
    for ring, idx in zip(rings, idxs, strict=True):
        end = start + 2 * len(ring)
        lines.append(_line_format(end - start) % (idx, *vals[start:end]))
        start = end
    return lines, left_out


def _unique_name(rec: ImageRecord, used: set[str], i: int) -> str:
    """The image's base name, prefixed when its stem is taken: ``x.jpg`` and ``x.jpeg`` would
    otherwise share the label file ``x.txt``."""
    name = safe_base_name(record_file_name(rec))
    stem = name.rsplit(".", 1)[0]
    if stem in used:
        name, stem = f"{i:06d}_{name}", f"{i:06d}_{stem}"
    used.add(stem)
    return name


#: The first lines of every data.yaml written: why it has no ``path`` (module docstring).
DATA_YAML_HEADER = (
    "# Panelbeater export. No 'path' on purpose: Ultralytics reads the folders below\n"
    "# relative to this file, so the dataset trains wherever it is unzipped.\n"
)


def write(
    records: Iterable[ImageRecord],
    taxonomy: Taxonomy,
    out_dir: str | Path,
    *,
    copy_images: bool = True,
    group: str | None = None,
) -> YoloExport:
    """Write an Ultralytics segmentation dataset.

    A record's split is ``record.split``, else derived from its sha256 (leak-free), else
    train. With ``copy_images`` each image is copied from ``record.meta["path"]``; without,
    only labels and data.yaml are written (fast path).

    Raises:
        ExportRefused: before anything is written, for a coordinate that is not finite or
            lies far outside its image (``exports.bounds``): clipping it to [0, 1] would hide it.
    """
    records = check_records(records)
    out = Path(out_dir)
    classes = export_classes(taxonomy, group)
    index_of = {c.id: i for i, c in enumerate(classes)}
    names = {i: c.name for i, c in enumerate(classes)}
    for sub in ("images", "labels"):
        for s in SPLITS:
            (out / sub / s).mkdir(parents=True, exist_ok=True)
    result = YoloExport(data_yaml=out / "data.yaml", names=names)
    used: dict[str, set[str]] = {s: set() for s in SPLITS}
    label_dirs = {s: str(out / "labels" / s) for s in SPLITS}
    for i, rec in enumerate(records):
        split = rec.split or (split_for(rec.sha256) if rec.sha256 else "train")
        name = _unique_name(rec, used[split], i)
        if copy_images:
            src = rec.meta.get("path")
            if not src or not Path(src).is_file():
                raise FormatError(
                    f"YOLO export: image {rec.file_name!r} has no readable file ({src!r}); "
                    "export labels only or restore the file"
                )
            shutil.copyfile(src, out / "images" / split / name)
        lines, left_out = label_lines(rec.instances, rec.width, rec.height, index_of)
        stem = name.rsplit(".", 1)[0] if "." in name else name
        with open(f"{label_dirs[split]}/{stem}.txt", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
        result.images[split] += 1
        result.instances[split] += len(lines)
        result.instances_left_out += left_out
    data = {**{s: f"images/{s}" for s in SPLITS}, "names": names}
    result.data_yaml.write_text(
        DATA_YAML_HEADER + yaml.safe_dump(data, sort_keys=False), encoding="utf-8"
    )
    return result


# -- parse ---------------------------------------------------------------------


def _label_path(image: Path) -> Path:
    # Ultralytics' rule: the last "images" folder in the path becomes "labels"
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _read_text(path: Path) -> str:
    """A label or list file inside the dataset: a regular file within the size limit."""
    from core.config import get_settings

    data = read_regular_file(
        path,
        limit=get_settings().max_label_file_bytes,
        what="label file",
        setting="max_label_file_bytes",
    )
    return data.decode("utf-8")


def _split_images(
    root: Path, base: Path, entry: Any, where: str, report: ParseReport
) -> list[Path]:
    """The image paths a data.yaml split names (folders, ``.txt`` lists, single images);
    every one inside ``base``, and any that leads out reported by name and left out."""
    entries = entry if isinstance(entry, list) else [entry]
    files: list[Path] = []
    for e in entries:
        try:
            p = resolve_inside(base, root / str(e))
        except ImageReadError as err:
            report.failed.append(f"{where}: entry {str(e)!r}: {err}; entry left out")
            continue
        if p.is_dir():
            files += list_image_files(p)
        elif p.suffix == ".txt" and p.exists():  # a list of image paths
            try:
                lines = _read_text(p).split()
            except (ImageReadError, UnicodeDecodeError) as err:
                report.failed.append(f"{where}: {err}; entry left out")
                continue
            for n, line in enumerate(lines, start=1):
                try:
                    resolve_inside(base, root / line)
                    files.append(root / line)
                except ImageReadError as err:
                    report.failed.append(f"{p}:{n}: image {line!r}: {err}; left out")
        else:
            raise FormatError(f"{where}: {e!r} is neither a folder nor a .txt list of images")
    return files


def _names(data: dict, source: str) -> dict[int, str]:
    names = data.get("names")
    if isinstance(names, list):
        return dict(enumerate(str(n) for n in names))
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as e:
            raise FormatError(f"{source}: 'names' keys must be class indices ({e})") from e
    raise FormatError(f"{source}: data.yaml needs 'names', a list or a mapping index -> class name")


def parse_label_file(
    path: Path, width: int, height: int, classes: dict[int, int | None], report: ParseReport
) -> Instances:
    """Instances of one label file; bad lines are reported with ``file:line``."""
    shapes, ids = [], []
    lines = _numeric_lines(path, _read_text(path), "<class index> x1 y1 ...", report)
    for where, idx, coords in lines:
        if idx not in classes:
            report.failed.append(f"{where}: class index {idx} is not in data.yaml 'names'")
            continue
        if classes[idx] is None:
            continue  # unknown name, collected by the resolver
        try:
            shape = _line_shape(coords, width, height)
        except GeometryError as e:
            report.failed.append(f"{where}: {e}; fix or delete this line")
            continue
        shapes.append(shape)
        ids.append(classes[idx])
    return Instances(shapes, ids) if shapes else Instances.empty()


def _numeric_lines(
    path: Path, text: str, layout: str, report: ParseReport
) -> Iterator[tuple[str, int, list[float]]]:
    """``(file:line, class index, values)`` of each non-blank line of a label file; a line
    that is not numbers is reported (``layout`` says what was expected) and left out."""
    for n, line in enumerate(text.splitlines(), start=1):
        vals = line.split()
        if not vals:
            continue
        where = f"{path}:{n}"
        try:
            idx = int(vals[0])
            nums = [float(v) for v in vals[1:]]
        except ValueError:
            report.failed.append(f"{where}: expected '{layout}' numbers, got {line[:60]!r}")
            continue
        yield where, idx, nums


def _line_shape(coords: list[float], width: float, height: float) -> Shape:
    """A label line's normalised values (a box ``cx cy w h`` or a ring) in pixels."""
    if len(coords) == 4:  # a detection box: x_centre y_centre w h
        cx, cy, w, h = coords[0] * width, coords[1] * height, coords[2] * width, coords[3] * height
        return Shape.from_box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    ring = fast_ring(coords)
    if ring is None:  # the core's checks and messages
        ring = as_ring(coords, where="polygon")
    return Shape((Polygon(ring * [width, height]),))


def read_names(data_yaml: str | Path) -> dict[int, str]:
    """Class index -> name from a data.yaml's ``names`` (a list or a mapping)."""
    path = Path(data_yaml)
    try:
        data = yaml.safe_load(_read_text(path))
    except (ImageReadError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: {e}") from e
    except yaml.YAMLError as e:
        raise FormatError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise FormatError(f"{path}: data.yaml must be a mapping with 'names'")
    return _names(data, str(path))


def parse_predictions(
    folder: str | Path,
    resolver: LabelResolver,
    *,
    source: str | None = None,
    names: dict[int, str] | None = None,
) -> tuple[list[ImageRecord], ParseReport]:
    """Records from a folder of Ultralytics prediction label files (``save_txt=True,
    save_conf=True``): one ``<stem>.txt`` per photo, lines ``cls x1 y1 ... xn yn conf``
    (segmentation) or ``cls cx cy w h conf`` (detection), coordinates normalised.

    A class index is named by ``names`` (a data.yaml's ``names``) or, without it, is its own
    label (``"0"``, resolved through the map file). A line without a confidence (an even count
    of values after the class) is scored 1.0 and counted in the report.

    Records are relative: ``width = height = 1`` with coordinates in ``[0, 1]``,
    ``meta["relative"] = True``; ``file_name`` is the label file's stem, which names the photo
    (``meta["match"] = "stem"``). Scale to the photo's size before use.
    """
    folder = Path(folder)
    source = source or str(folder)
    if not folder.is_dir():
        raise FormatError(
            f"{source}: not a folder; give the 'labels' folder Ultralytics wrote predictions to"
        )
    report = ParseReport()
    classes: dict[int, int | None] = {}
    records, unscored = [], 0
    for path in sorted(folder.rglob("*.txt")):
        try:
            text = _read_text(path)
        except (ImageReadError, UnicodeDecodeError) as e:
            report.failed.append(f"{path}: {e}; file left out")
            continue
        shapes, ids, scores = [], [], []
        lines = _numeric_lines(path, text, "<class index> x1 y1 ... <confidence>", report)
        for where, idx, nums in lines:
            if len(nums) % 2:
                *coords, score = nums
            else:
                coords, score = nums, 1.0
                unscored += 1
            if idx not in classes:
                label = names[idx] if names is not None and idx in names else str(idx)
                if names is not None and idx not in names:
                    report.failed.append(f"{where}: class index {idx} is not in 'names'")
                    continue
                cls = resolver.resolve(label)
                classes[idx] = None if cls is None else cls.id
            if classes[idx] is None:
                continue  # unknown label, collected by the resolver
            if not 0.0 <= score <= 1.0:
                report.failed.append(f"{where}: confidence {score} is not between 0 and 1")
                continue
            try:
                shape = _line_shape(coords, 1.0, 1.0)
            except GeometryError as e:
                report.failed.append(f"{where}: {e}; fix or delete this line")
                continue
            shapes.append(shape)
            ids.append(classes[idx])
            scores.append(score)
        inst = Instances(shapes, ids, scores=scores) if shapes else Instances.empty()
        records.append(ImageRecord(path.stem, 1, 1, inst, meta={"relative": True, "match": "stem"}))
    if unscored:
        report.skipped.append(
            f"{source}: {unscored} line(s) carry no confidence (predict with save_conf=True); "
            "scored 1.0"
        )
    return records, report


def _dataset_root(
    data: dict, data_yaml_path: Path, base: Path, source: str, report: ParseReport
) -> Path:
    """The folder data.yaml's ``path`` names, when it lies inside ``base``; else the folder
    of data.yaml (a moved dataset, whose files sit beside it), with a note when ``path``
    leads out. The note reads the same whether or not the outside folder exists."""
    beside = data_yaml_path.parent.resolve()
    if not beside.is_relative_to(base):
        beside = base
    if not data.get("path"):
        return beside
    try:
        root = resolve_inside(base, data_yaml_path.parent / str(data["path"]))
    except ImageReadError:
        report.skipped.append(
            f"{source}: 'path' ({str(data['path'])!r}) leads outside the dataset folder {base}; "
            f"the dataset was read from {beside} instead. Give the dataset folder (--images) "
            "to read it from elsewhere"
        )
        return beside
    return root if root.is_dir() else beside


def parse(
    data_yaml_path: str | Path,
    resolver: LabelResolver,
    *,
    source: str | None = None,
    images_dir: str | Path | None = None,
) -> tuple[list[ImageRecord], ParseReport]:
    """Records from an Ultralytics dataset (detection boxes or segmentation rings).

    Images are read for their size and sha256 (``record.meta["path"]`` = absolute path);
    ``record.file_name`` is relative to the dataset root; ``record.split`` is the data.yaml key.
    Every file read lies inside ``images_dir`` (default: the folder of data.yaml): a ``path``,
    split entry, list line or label file that leads out is reported and left out.
    """
    data_yaml_path = Path(data_yaml_path)
    source = source or str(data_yaml_path)
    base = Path(images_dir or data_yaml_path.parent).resolve()
    try:
        data = yaml.safe_load(data_yaml_path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FormatError(f"{source}: the file does not exist") from e
    except yaml.YAMLError as e:
        raise FormatError(f"{source}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise FormatError(f"{source}: data.yaml must be a mapping with path, train, val and names")
    report = ParseReport()
    root = _dataset_root(data, data_yaml_path, base, source, report)
    classes: dict[int, int | None] = {}
    for idx, name in _names(data, source).items():
        cls = resolver.resolve(name)
        classes[idx] = None if cls is None else cls.id
    records = []
    for split in SPLITS:
        if not data.get(split):
            continue
        for img in _split_images(root, base, data[split], f"{source}: {split!r}", report):
            try:
                resolve_inside(base, img)  # a link in an image folder may lead out
            except ImageReadError as e:
                report.failed.append(f"{source}: image {str(img)!r}: {e}; left out")
                continue
            try:
                info = read_image_info(img)
            except ImageReadError as e:
                report.failed.append(str(e))
                continue
            label = _label_path(img)
            try:
                resolve_inside(base, label)
                inst = (
                    parse_label_file(label, info.width, info.height, classes, report)
                    if label.exists()
                    else Instances.empty()
                )
            except (ImageReadError, UnicodeDecodeError) as e:
                report.failed.append(f"{source}: label file of {img.name}: {e}; image left out")
                continue
            try:
                rel = str(img.relative_to(root))
            except ValueError:
                rel = str(img)
            records.append(
                ImageRecord(
                    rel,
                    info.width,
                    info.height,
                    inst,
                    split=split,
                    sha256=info.sha256,
                    meta={"path": str(img.resolve()), "format": info.format},
                )
            )
    return records, report
