"""Format converter figures on a synthetic project: 10,000 images, 100,000 polygons.

Times the pure converters (no database): COCO build + JSON dump, YOLO labels-only write,
and reading both back (COCO json.load + parse; YOLO label files parsed with known sizes),
plus Label Studio task building on a slice. Prints seconds and the peak RSS.

    .venv/bin/python bench/bench_formats.py [--images 10000] [--polygons 100000]

Timings on a shared 2-core machine are noisy; run twice and take the lower figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from core.records import LabelResolver, ParseReport
from core.taxonomy import default_taxonomy
from exports import coco, label_studio, yolo
from exports.compare import instance_count
from exports.synthetic import random_records


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--polygons", type=int, default=100_000)
    args = ap.parse_args()
    tax = default_taxonomy()
    figures: dict[str, float] = {}

    t = time.perf_counter()
    records = random_records(tax, args.images, args.polygons, seed=0)
    figures["generate records"] = time.perf_counter() - t
    work = Path(tempfile.mkdtemp(prefix="bench-formats-"))
    try:
        t = time.perf_counter()
        data = coco.build(records, tax)
        figures["coco build"] = time.perf_counter() - t
        t = time.perf_counter()
        coco.dump(data, work / "export.json")
        figures["coco json dump"] = time.perf_counter() - t
        size_mb = (work / "export.json").stat().st_size / 1e6
        del data

        t = time.perf_counter()
        out = yolo.write(records, tax, work / "yolo", copy_images=False)
        figures["yolo labels write"] = time.perf_counter() - t
        assert sum(out.instances.values()) == args.polygons

        t = time.perf_counter()
        loaded = coco.load(work / "export.json")
        figures["coco json load"] = time.perf_counter() - t
        t = time.perf_counter()
        back, report = coco.parse(loaded, LabelResolver(tax), source="export.json")
        figures["coco parse"] = time.perf_counter() - t
        assert instance_count(back) == args.polygons and not report.failed
        del loaded, back

        # YOLO read-back without image files: sizes are known here (the real parse reads images)
        index = {i: c.id for i, c in enumerate(yolo.export_classes(tax))}
        rep = ParseReport()
        t = time.perf_counter()
        n = 0
        for rec in records:
            split = rec.split or "train"
            stem = rec.file_name.rsplit(".", 1)[0]
            label = work / "yolo" / "labels" / split / f"{stem}.txt"
            if not label.exists():
                from exports.splits import split_for

                label = work / "yolo" / "labels" / split_for(rec.sha256) / f"{stem}.txt"
            n += len(yolo.parse_label_file(label, rec.width, rec.height, index, rep))
        figures["yolo labels parse"] = time.perf_counter() - t
        assert n == args.polygons and not rep.failed

        k = max(1, args.images // 10)
        t = time.perf_counter()
        tasks = label_studio.build_tasks(records[:k], tax)
        figures[f"label studio build ({k} images)"] = time.perf_counter() - t
        t = time.perf_counter()
        label_studio.parse(json.loads(json.dumps(tasks)), LabelResolver(tax), source="tasks")
        figures[f"label studio dump+parse ({k} images)"] = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)

    dsmlr = Path(__file__).resolve().parents[2] / "shared/datasets/car_parts_dsmlr/trainingset"
    if dsmlr.is_dir():
        from core.records import load_label_map
        from exports.image_files import read_image_info

        t = time.perf_counter()
        files = sorted((dsmlr / "JPEGImages").glob("*.jpg"))
        infos = [read_image_info(f) for f in files]
        figures["dsmlr: read + hash 400 images"] = time.perf_counter() - t
        t = time.perf_counter()
        label_map = load_label_map(
            Path(__file__).resolve().parents[1] / "tests/data/dsmlr_map.json"
        )
        recs, _ = coco.parse(
            coco.load(dsmlr / "annotations.json"), LabelResolver(tax, label_map), source="dsmlr"
        )
        figures["dsmlr: load + parse annotations"] = time.perf_counter() - t
        assert len(infos) == 400 and instance_count(recs) == 3073

    print(
        f"synthetic project: {args.images} images, {args.polygons} polygons (COCO file {size_mb:.1f} MB)"
    )
    for name, secs in figures.items():
        print(f"  {name:<40s} {secs:7.2f} s")
    print(
        f"  {'export coco (build + dump)':<40s} {figures['coco build'] + figures['coco json dump']:7.2f} s"
    )
    print(
        f"  {'import coco (load + parse)':<40s} {figures['coco json load'] + figures['coco parse']:7.2f} s"
    )
    print(f"  peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
