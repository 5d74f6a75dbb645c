"""Imports stay inside their folder and within bounds.

Each test builds a tiny dataset in ``tmp_path``: paths that lead out of the images folder
(``../x``, absolute paths, symbolic links, a YOLO ``path:``), a pipe and ``/dev/zero``, files
over the byte and pixel limits, a real decompression bomb, geometry the save path would
refuse, and the known crashes (a VIA ``regions: 5``, a COCO RLE that claims 30000x30000).
The bad entry is reported by name and the rest is imported.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import select

from core.config import get_settings
from db.models import Annotation, Image
from db.session import session_scope
from services.accounts.projects import get_or_create_project
from services.data_io import imports

REPO = Path(__file__).resolve().parents[1]


# -- test photos ------------------------------------------------------------------


def photo(path: Path, size: tuple[int, int] = (64, 48), value: int = 0) -> Path:
    """A small PNG whose pixels depend on ``value`` (so each has its own content hash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    PILImage.fromarray(pixels).save(path)
    return path


def png_bomb(path: Path, side: int = 20_000) -> Path:
    """A 1-bit ``side`` x ``side`` PNG of zeros: a few tens of KB that decode to 400 MB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def run_import(kind: str, path: Path, **kw) -> imports.ImportReport:
    with session_scope() as s:
        return imports.IMPORTERS[kind](s, get_or_create_project(s), path, **kw)


def stored_names() -> set[str]:
    with session_scope() as s:
        return set(s.exec(select(Image.file_name)).all())


def stored_paths() -> list[str]:
    with session_scope() as s:
        return list(s.exec(select(Image.path)).all())


def coco_file(folder: Path, names: list[str], annotations: list[dict] | None = None) -> Path:
    data = {
        "images": [
            {"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)
        ],
        "annotations": annotations or [],
        "categories": [{"id": 1, "name": "dent"}],
    }
    path = folder / "labels.json"
    path.write_text(json.dumps(data))
    return path


def square(x0: float, y0: float, side: float) -> list[float]:
    return [x0, y0, x0 + side, y0, x0 + side, y0 + side, x0, y0 + side]


def run_isolated(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with 3 GB of address space and a time limit, for
    inputs that hang, exhaust memory or crash the process on code without the bounds."""
    prelude = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
    )
    try:
        return subprocess.run(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {timeout} s")


@pytest.fixture
def limits(store, monkeypatch):
    """Set limits on the store's settings for one test; Pillow's global limit is restored."""
    settings = get_settings()
    pillow_limit = PILImage.MAX_IMAGE_PIXELS

    def set_limits(**values):
        for k, v in values.items():
            monkeypatch.setattr(settings, k, v)

    yield set_limits
    PILImage.MAX_IMAGE_PIXELS = pillow_limit


# -- 3. paths stay inside the images folder ------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A photo next to, not inside, the images folder ``tmp_path / "images"``."""
    return photo(tmp_path / "secret" / "outside.png", value=99)


def test_coco_entries_that_leave_the_folder_are_refused_and_the_rest_imported(
    store, tmp_path, outside
):
    images = tmp_path / "images"
    photo(images / "good.png", value=1)
    (images / "link.png").symlink_to(outside)
    names = ["good.png", "../secret/outside.png", str(outside), "link.png"]
    report = run_import("coco", coco_file(images, names), images_dir=images)
    assert stored_names() == {"good.png"}
    assert report.images_added == 1 and report.images_failed == 3
    for name in names[1:]:
        assert any(
            m.startswith(f"{name}: ") and "outside the images folder" in m for m in report.messages
        )
    assert all(str(outside) not in p for p in stored_paths())


def test_a_refusal_reads_the_same_whether_or_not_the_outside_file_exists(store, tmp_path, outside):
    images = tmp_path / "images"
    photo(images / "good.png", value=1)
    (images / "link-to-file.png").symlink_to(outside)
    (images / "link-to-nothing.png").symlink_to(tmp_path / "secret" / "missing.png")
    pairs = [
        ("../secret/outside.png", "../secret/missing.png"),
        ("link-to-file.png", "link-to-nothing.png"),
    ]
    names = ["good.png"] + [n for pair in pairs for n in pair]
    report = run_import("coco", coco_file(images, names), images_dir=images)

    def said_about(name: str) -> str:
        (line,) = [m for m in report.messages if m.startswith(f"{name}: ")]
        return line.removeprefix(f"{name}: ")

    for exists, missing in pairs:
        assert said_about(exists) == said_about(missing)
    assert stored_names() == {"good.png"}


def test_via_entries_that_leave_the_folder_are_refused(store, tmp_path, outside):
    images = tmp_path / "images"
    photo(images / "good.png", value=1)
    region = {
        "shape_attributes": {"name": "rect", "x": 2, "y": 2, "width": 10, "height": 10},
        "region_attributes": {"name": "dent"},
    }
    entries = {
        n: {"filename": n, "size": 0, "regions": [region]}
        for n in ("good.png", "../secret/outside.png", str(outside))
    }
    (images / "via.json").write_text(json.dumps(entries))
    report = run_import("via", images / "via.json", images_dir=images)
    assert stored_names() == {"good.png"}
    assert report.instances_added == 1
    assert sum("outside the images folder" in m for m in report.messages) == 2


def test_folder_import_refuses_links_that_lead_out(store, tmp_path, outside):
    folder = tmp_path / "images"
    for i in range(3):
        photo(folder / f"p{i}.png", value=i)
    (folder / "sub").mkdir()
    (folder / "sub" / "escape.png").symlink_to(outside)
    (folder / "all-of-secret").symlink_to(outside.parent, target_is_directory=True)
    (folder / "inner.png").symlink_to(folder / "p0.png")  # a link inside is fine
    report = run_import("folder", folder)
    assert report.images_added == 3 and report.images_skipped == 1
    assert report.images_failed == 1
    assert any(m.startswith("sub/escape.png: ") for m in report.messages)
    assert all(str(outside.parent) not in p for p in stored_paths())


def test_yolo_path_and_list_lines_outside_the_dataset_are_not_read(store, tmp_path, outside):
    ds = tmp_path / "ds"
    photo(ds / "images" / "train" / "a.png", value=1)
    (ds / "labels" / "train").mkdir(parents=True)
    (ds / "labels" / "train" / "a.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    # an outside dataset that data.yaml's path points to, with its own image
    photo(tmp_path / "secret" / "images" / "train" / "stolen.png", value=7)
    (ds / "val.txt").write_text(f"images/train/a.png\n../secret/outside.png\n{outside}\n")
    (ds / "data.yaml").write_text(
        f"path: {tmp_path / 'secret'}\ntrain: images/train\nval: val.txt\nnames: ['dent']\n"
    )
    report = run_import("yolo", ds / "data.yaml")
    names = stored_names()
    assert names == {"images/train/a.png"}, names
    assert not any("stolen" in p or "outside" in p for p in stored_paths())
    assert any("'path'" in m and "leads outside the dataset folder" in m for m in report.messages)
    assert sum("outside the images folder" in m for m in report.messages) == 2


def test_yolo_label_file_that_links_out_is_not_read(store, tmp_path):
    ds = tmp_path / "ds"
    photo(ds / "images" / "train" / "a.png", value=1)
    photo(ds / "images" / "train" / "b.png", value=2)
    (ds / "labels" / "train").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("0 0.1 0.1 0.5 0.1 0.5 0.5 and a password\n")
    (ds / "labels" / "train" / "a.txt").symlink_to(secret)
    (ds / "labels" / "train" / "b.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    (ds / "data.yaml").write_text("train: images/train\nnames: ['dent']\n")
    report = run_import("yolo", ds / "data.yaml")
    assert stored_names() == {"images/train/b.png"}
    assert not any("password" in m for m in report.messages)
    assert any("a.png" in m and "outside the images folder" in m for m in report.messages)


# -- 3. regular files only, with a size limit ------------------------------------------


def test_a_pipe_named_like_a_photo_does_not_hang_the_import(store, tmp_path):
    images = tmp_path / "images"
    photo(images / "good.png", value=1)
    os.mkfifo(images / "pipe.png")
    result: dict = {}

    def work() -> None:
        result["report"] = run_import(
            "coco", coco_file(images, ["pipe.png", "good.png"]), images_dir=images
        )

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # release the reader blocked on the pipe, then fail
        os.close(os.open(images / "pipe.png", os.O_WRONLY | os.O_NONBLOCK))
        t.join(30)
        pytest.fail("the import hung on a pipe")
    report = result["report"]
    assert stored_names() == {"good.png"}
    assert any(m.startswith("pipe.png: ") and "not a regular file" in m for m in report.messages)


def test_a_device_is_never_read():
    proc = run_isolated(
        """
        from exports.image_files import ImageReadError, read_image_info
        try:
            read_image_info("/dev/zero")
        except ImageReadError as e:
            print("REFUSED", e)
        """,
        timeout=60,
    )
    assert "REFUSED" in proc.stdout, proc.stderr[-2000:]
    assert "not a regular file" in proc.stdout


def test_files_over_the_byte_limit_are_refused_by_name(limits, tmp_path):
    folder = tmp_path / "images"
    photo(folder / "small.png", (8, 8), value=1)
    photo(folder / "large.png", (200, 200), value=2)  # ~120 KB of noise
    limits(max_image_bytes=20_000)
    report = run_import("folder", folder)
    assert stored_names() == {"small.png"}
    assert report.images_failed == 1
    (message,) = [m for m in report.messages if m.startswith("large.png: ")]
    assert "larger than the limit" in message and "PANELBEATER_MAX_IMAGE_BYTES" in message


# -- 7. image size limits: decompression bombs are bad files, never the end of a batch ------


def test_one_bomb_among_good_photos_fails_alone(store, tmp_path):
    folder = tmp_path / "images"
    for i in range(5):
        photo(folder / f"good{i}.png", value=i)
    png_bomb(folder / "bomb.png")
    assert (folder / "bomb.png").stat().st_size < 200_000
    report = run_import("folder", folder)
    assert report.images_added == 5 and report.images_failed == 1
    (message,) = [m for m in report.messages if m.startswith("bomb.png: ")]
    assert "decompression bomb" in message and "PANELBEATER_MAX_IMAGE_PIXELS" in message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_pixel_limit_is_a_setting(limits, tmp_path):
    folder = tmp_path / "images"
    photo(folder / "small.png", (50, 40), value=1)  # 2,000 pixels
    photo(folder / "large.png", (150, 100), value=2)  # 15,000: under Pillow's 2x error
    limits(max_image_pixels=10_000)
    report = run_import("folder", folder)
    assert stored_names() == {"small.png"}
    (message,) = [m for m in report.messages if m.startswith("large.png: ")]
    assert "150x100" in message and "10,000 pixels" in message


def _upload(data: dict[str, bytes]) -> imports.ImportReport:
    with session_scope() as s:
        return imports.import_uploads(s, get_or_create_project(s), list(data.items()))


def _png_bytes(value: int, size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(value)
    PILImage.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def test_a_failed_upload_leaves_no_file_behind(store, tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png").read_bytes()
    good = _png_bytes(1)
    report = _upload({"good.png": good, "bomb.png": bomb, "broken.png": good[: len(good) // 2]})
    assert (report.images_added, report.images_failed) == (1, 2)
    assert any("bomb.png" in m and "decompression bomb" in m for m in report.messages)
    assert any("broken.png" in m and "truncated or corrupt" in m for m in report.messages)
    media = get_settings().media_dir
    assert [p.name for p in media.iterdir()] == [Path(stored_paths()[0]).name]


def test_uploads_over_the_byte_limit_are_refused(limits):
    limits(max_image_bytes=1_000)
    report = _upload({"big.png": _png_bytes(2, (64, 64)), "ok.png": _png_bytes(3, (4, 4))})
    assert (report.images_added, report.images_failed) == (1, 1)
    assert any("big.png" in m and "larger than the limit" in m for m in report.messages)
    assert len(list(get_settings().media_dir.iterdir())) == 1


def test_an_upload_that_fails_as_a_whole_removes_its_files(store, monkeypatch):
    def broken_store(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(imports, "store_photo", broken_store)
    with pytest.raises(RuntimeError):
        _upload({"a.png": _png_bytes(4), "b.png": _png_bytes(5)})
    media = get_settings().media_dir
    assert not media.exists() or list(media.iterdir()) == []


# -- 7. the known crashes ------------------------------------------------------------------


def test_via_regions_that_are_not_a_list_are_reported(store, tmp_path):
    images = tmp_path / "images"
    photo(images / "a.png", value=1)
    photo(images / "b.png", value=2)
    region = {
        "shape_attributes": {"name": "rect", "x": 2, "y": 2, "width": 10, "height": 10},
        "region_attributes": {"name": "dent"},
    }
    entries = {
        "a.png1": {"filename": "a.png", "size": 1, "regions": 5},
        "b.png2": {"filename": "b.png", "size": 2, "regions": [region, {"shape_attributes": 3}]},
    }
    (images / "via.json").write_text(json.dumps(entries))
    report = run_import("via", images / "via.json", images_dir=images)
    assert stored_names() == {"b.png"} and report.instances_added == 1
    assert any("'a.png1'" in m and "'regions' must be a list" in m for m in report.messages)
    assert any("region 1" in m and "shape_attributes" in m for m in report.messages)


def test_a_coco_rle_that_claims_30000_by_30000_pixels_is_refused():
    proc = run_isolated(
        """
        from core.records import LabelResolver
        from core.taxonomy import default_taxonomy
        from exports import coco

        good = {"size": [48, 64], "counts": [100, 50, 2922]}
        data = {
            "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [30000, 30000], "counts": "0"}},
                {"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": [30000, 30000], "counts": [0, 900000000]}},
                {"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"size": [48, 64], "counts": [0, 10**9]}},
                {"id": 4, "image_id": 1, "category_id": 1, "segmentation": good},
            ],
            "categories": [{"id": 1, "name": "dent"}],
        }
        records, report = coco.parse(data, LabelResolver(default_taxonomy()), source="x.json")
        print("INSTANCES", len(records[0].instances))
        for line in report.failed:
            print("FAILED", line)
        """,
        timeout=60,
    )
    out = proc.stdout
    assert "INSTANCES 1" in out, (out, proc.stderr[-2000:])
    assert out.count("FAILED") == 3
    assert "annotation 1" in out and "30000x30000 pixels, more than the limit" in out
    assert "annotation 3" in out and "runs cover" in out


def test_an_rle_over_the_pixel_limit_is_refused_in_an_import(limits, tmp_path):
    from exports.coco import mask_to_rle

    images = tmp_path / "images"
    photo(images / "a.png", value=1)  # 64 x 48: 3,072 pixels
    mask = np.zeros((120, 100), bool)
    mask[10:20, 10:30] = True
    labels = images / "labels.json"
    labels.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 120}],
                "annotations": [
                    _coco_ann(1, mask_to_rle(mask)),
                    _coco_ann(2, [square(1, 1, 5)]),
                ],
                "categories": [{"id": 1, "name": "dent"}],
            }
        )
    )
    limits(max_image_pixels=10_000)  # the photo is under it, the RLE's 12,000 are not
    report = run_import("coco", labels, images_dir=images)
    assert report.images_added == 1 and report.instances_added == 1
    (message,) = [m for m in report.messages if "annotation 1" in m]
    assert "the RLE claims 100x120 pixels, more than the limit of 10,000" in message


# -- 7. imports validate geometry as the save path does -------------------------------------


def _coco_ann(i: int, seg, attributes: dict | None = None) -> dict:
    ann = {"id": i, "image_id": 1, "category_id": 1, "segmentation": seg}
    if attributes is not None:
        ann["attributes"] = attributes
    return ann


def test_imported_geometry_is_what_the_save_path_accepts(store, tmp_path):
    from services.labelling.readers import annotation_dicts
    from services.labelling.saves import save_annotations

    images = tmp_path / "images"
    photo(images / "a.png", value=1)  # 64 x 48
    anns = [
        _coco_ann(1, [square(5, 5, 10)]),  # good
        _coco_ann(2, [square(5000, 5000, 10)]),  # far outside: refused
        _coco_ann(3, [[10, 10, 1e9, 10, 1e9, 30, 10, 30]]),  # reaches far out: clipped
        _coco_ann(4, [[1, 1, 2, 2, 3, 3]]),  # no area
        _coco_ann(5, [square(10, 10, 20)], {"occluded": "yes"}),  # not true or false
        _coco_ann(6, [square(20, 20, 5)], {"severity": "catastrophic"}),  # not a severity
        _coco_ann(7, [[5, 5, 5.001, 5, 5.001, 5.001, 5, 5.001]]),  # zero area once stored
        _coco_ann(8, [square(66, 10, 5)], {"severity": "minor"}),  # just outside: kept
    ]
    report = run_import("coco", coco_file(images, ["a.png"], anns), images_dir=images)
    assert report.instances_added == 3 and report.instances_failed == 5

    def said(k: int) -> str:
        (line,) = [m for m in report.messages if m.startswith(f"a.png: instance {k}: ")]
        return line

    assert "outside the 64x48 image" in said(2)
    assert "clipped to the image" in said(3)
    assert "zero area" in said(4) and "zero area" in said(7)
    assert "occluded" in said(5) and "severity" in said(6)
    with session_scope() as s:
        image = s.exec(select(Image)).one()
        stored = annotation_dicts(s, image.id)
        right_edges = sorted(max(x for x, _ in a["geometry"][0]["exterior"]) for a in stored)
        assert right_edges == [15, 64, 71]  # the good one, the clipped one, the one just out
        # the photo saves again exactly as imported
        save_annotations(
            s,
            image_id=image.id,
            expected_version=image.annotation_version,
            author="a",
            annotations=stored,
        )


def test_polygons_over_the_vertex_limit_are_refused(limits, tmp_path):
    images = tmp_path / "images"
    photo(images / "a.png", value=1)
    limits(max_vertices_per_polygon=50)
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    circle = np.stack([32 + 10 * np.cos(t), 24 + 10 * np.sin(t)], axis=1).ravel().tolist()
    anns = [_coco_ann(1, [circle]), _coco_ann(2, [square(2, 2, 5)])]
    report = run_import("coco", coco_file(images, ["a.png"], anns), images_dir=images)
    assert report.instances_added == 1 and report.instances_failed == 1
    (message,) = [m for m in report.messages if m.startswith("a.png: instance 1: ")]
    assert "60 points, more than the limit of 50" in message
    assert "PANELBEATER_MAX_VERTICES_PER_POLYGON" in message


def test_a_photo_holds_at_most_the_polygon_limit(limits, tmp_path):
    images = tmp_path / "images"
    photo(images / "a.png", value=1)
    limits(max_polygons_per_image=3)
    anns = [_coco_ann(i + 1, [square(2 + 5 * i, 2, 4)]) for i in range(5)]
    report = run_import("coco", coco_file(images, ["a.png"], anns), images_dir=images)
    assert report.instances_added == 3 and report.instances_failed == 2
    assert any(
        m.startswith("a.png: 2 instance(s) left out") and "PANELBEATER_MAX_POLYGONS_PER_IMAGE" in m
        for m in report.messages
    )
    # a second file cannot push the photo past the limit either
    more = [_coco_ann(i + 1, [square(2 + 5 * i, 20, 4)]) for i in range(2)]
    again = run_import("coco", coco_file(images, ["a.png"], more), images_dir=images)
    assert again.instances_added == 0 and again.instances_failed == 2
    with session_scope() as s:
        assert len(s.exec(select(Annotation)).all()) == 3


def test_limits_are_settings_with_sane_defaults(monkeypatch):
    from core.config import Settings

    s = Settings()
    assert s.max_image_bytes == 50 * 1024 * 1024 and s.max_image_pixels == 100_000_000
    assert s.max_vertices_per_polygon >= 1_000 and s.max_polygons_per_image >= 100
    monkeypatch.setenv("PANELBEATER_MAX_IMAGE_PIXELS", "1234")
    assert Settings().max_image_pixels == 1234


def test_label_studio_tasks_never_read_outside_the_folder(store, tmp_path, outside):
    images = tmp_path / "images"
    photo(images / "good.png", value=1)
    names = ["good.png", "../secret/outside.png", "../secret/missing.png", str(outside)]
    tasks = [{"id": i, "data": {"image": name}, "annotations": []} for i, name in enumerate(names)]
    path = images / "export.json"
    path.write_text(json.dumps(tasks))
    report = run_import("label-studio", path, images_dir=images)
    assert stored_names() == {"good.png"}
    assert all(str(outside) not in p for p in stored_paths())
    told = [m.split("): ", 1)[1] for m in report.messages if "task 1 " in m or "task 2 " in m]
    assert len(told) == 2 and told[0].replace("outside", "missing") == told[1]
