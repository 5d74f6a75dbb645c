"""Model throughput on the CPU (noisy: a shared 2-core machine).

    .venv/bin/python bench/bench_models.py [--images 8] [--imgsz 640] [--skip-base]

1. YOLO + ResNet34 pipeline vs bare Ultralytics ``predict`` of the same YOLO on the same
   1024-px photos at the same ``imgsz``, measured in one run (random weights, so the numbers
   of parts found differ from a trained model's; both paths see the same detections).
2. ALBERT tiny and base forward time per image.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASETS = ROOT.parent / "shared" / "datasets"


def photos(n: int) -> list[np.ndarray]:
    import cv2

    from models.base import load_rgb

    files = sorted((DATASETS / "coco_car_damage" / "train").glob("*.jpg"))[:n]
    out = []
    for f in files:
        im = load_rgb(f)
        s = 1024 / max(im.shape[:2])
        out.append(cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s))))
    return out


def timed(fn, reps: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument(
        "--max-det", type=int, default=8, help="parts per photo (random weights: use --conf 0)"
    )
    ap.add_argument("--model", default="yolo11n-seg.yaml")
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--skip-base", action="store_true")
    ap.add_argument("--skip-albert", action="store_true")
    args = ap.parse_args()
    from models.base import limit_cpu_threads
    from models.registry import build

    limit_cpu_threads(2)
    # random YOLO weights: detections of head classes beyond our 61 are dropped, so check
    # "parts per photo" below; a run with 0 parts measures no ResNet work (rerun it)
    imgs = photos(args.images)
    pipe = build(
        "pipeline",
        {
            "preset": "tiny",
            "device": "cpu",
            "yolo": {
                "model": args.model,
                "imgsz": args.imgsz,
                "conf": args.conf,
                "max_det": args.max_det,
            },
            "classifier": {"crop_size": args.crop},
        },
    )
    yolo = pipe.yolo.yolo
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in imgs]
    pipe.predict(imgs[:1])  # warm-up both paths
    yolo.predict(
        bgr[:1], imgsz=args.imgsz, conf=args.conf, max_det=args.max_det, verbose=False, device="cpu"
    )
    t_bare = timed(
        lambda: [
            yolo.predict(
                [b],
                imgsz=args.imgsz,
                conf=args.conf,
                max_det=args.max_det,
                verbose=False,
                device="cpu",
            )
            for b in bgr
        ]
    )
    n_parts = []
    t_pipe = timed(
        lambda: n_parts.extend(len(r.instances) for im in imgs for r in pipe.predict([im]))
    )
    print(
        f"bare Ultralytics predict: {len(imgs) / t_bare:.2f} img/s; pipeline (YOLO + ResNet34 per part): "
        f"{len(imgs) / t_pipe:.2f} img/s; ratio {t_bare / t_pipe:.2f}; parts per photo {np.mean(n_parts):.1f}"
    )

    if args.skip_albert:
        return
    from models.albert.config import AlbertConfig
    from models.albert.stage import AlbertStage

    for preset in ("tiny",) + (() if args.skip_base else ("base",)):
        st = AlbertStage(AlbertConfig.from_preset(preset, device="cpu", batch_size=1))
        st.forward_images(imgs[:1])
        t = timed(lambda st=st: [st.forward_images([im]) for im in imgs[:4]]) / 4
        tp = timed(lambda st=st: st.predict(imgs[:4])) / 4
        n = sum(p.numel() for p in st.model.parameters()) / 1e6
        print(
            f"ALBERT {preset} ({n:.1f} M params, {st.config.image_size}px): forward {t * 1000:.0f} ms/img, "
            f"predict incl. post-processing {tp * 1000:.0f} ms/img"
        )


if __name__ == "__main__":
    main()
