"""Model throughput on the CPU (noisy: a shared 2-core machine).

    .venv/bin/python bench/bench_models.py [--images 8] [--imgsz 640] [--skip-base]
        [--model yolo12m-seg.yaml] [--fp32] [--seed 1] [--reps 2] [--skip-albert]

1. YOLO + ResNet34 pipeline vs bare Ultralytics ``predict`` of the same YOLO on the same
   1024-px photos at the same ``imgsz``, measured in one run (random weights, so the numbers
   of parts found differ from a trained model's; both paths see the same detections). The
   arms alternate ``--reps`` times and each keeps its best; the bare arm keeps the better of
   one call per photo and one call for all. Ultralytics runs CPU predict on cpu_count - 1
   torch threads (1 here); the pipeline uses the idle core for ResNet (see models/pipeline.py).
   The ResNet runs in int8 on the CPU by default (``--fp32`` for float); the run also
   prints how well int8 agrees with fp32 on the part crops it classified.
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
from torch_threads import add_threads_option, apply_threads  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"


def photos(n: int) -> list[np.ndarray]:
    import cv2

    from models.data import load_rgb

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
    ap.add_argument(
        "--seed", type=int, default=1, help="random YOLO weights: some seeds find no parts"
    )
    ap.add_argument("--fp32", action="store_true", help="ResNet in fp32, not the default int8")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--skip-base", action="store_true")
    ap.add_argument("--skip-albert", action="store_true")
    add_threads_option(ap)
    args = ap.parse_args()
    from models.registry import build

    apply_threads(args)
    # random YOLO weights: detections of head classes beyond our 61 are dropped, so check
    # "parts per photo" below; a run with 0 parts measures no ResNet work (rerun it)
    imgs = photos(args.images)
    import torch

    torch.manual_seed(args.seed)
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
            "classifier": {"crop_size": args.crop, "int8": not args.fp32},
        },
    )
    yolo = pipe.yolo.yolo
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in imgs]
    if not args.fp32:
        # calibrate on the real part crops of the first photos, then report agreement with fp32
        from models.part_classifier import PartClassifierStage, part_crop

        res = pipe.yolo.predict(imgs)
        crops = [
            part_crop(im, s, args.crop)
            for im, r in zip(imgs, res, strict=True)
            for s in r.instances.shapes
        ]
        pipe.classifier.calibrate_int8(crops)  # a trained file carries its training crops' ranges
        q = pipe.classifier.classify_crops(crops)
        fp = PartClassifierStage(
            pipe.classifier.config.__class__(**{**vars(pipe.classifier.config), "int8": False})
        )
        fp.net.load_state_dict(pipe.classifier.net.state_dict())
        f = fp.classify_crops(crops)
        print(
            f"int8 vs fp32 on {len(crops)} crops: argmax agreement {(q.argmax(1) == f.argmax(1)).mean():.3f}, "
            f"max |P(damaged) diff| {np.abs(q[:, 1] - f[:, 1]).max():.4f} (random weights: weak evidence)"
        )
    pipe.predict(imgs[:1])  # warm-up both paths
    # the classifier builds its frozen inference copy on first use (seconds): not per photo
    for n in (1, 8):
        pipe.classifier.classify_crops([np.zeros((args.crop, args.crop, 3), np.uint8)] * n)
    yolo.predict(
        bgr[:1], imgsz=args.imgsz, conf=args.conf, max_det=args.max_det, verbose=False, device="cpu"
    )
    kw = dict(imgsz=args.imgsz, conf=args.conf, max_det=args.max_det, verbose=False, device="cpu")
    # arms interleaved, best of --reps each: other jobs on this shared machine come and go
    # the bare arm gets the better of one call per photo and one call for all of them
    n_parts: list[int] = []
    t_each, t_all, t_pipe = [], [], []
    for _ in range(args.reps):
        t_each.append(timed(lambda: [yolo.predict([b], **kw) for b in bgr]))
        t_all.append(timed(lambda: yolo.predict(bgr, **kw)))
        # the pipeline is called as pre-annotation calls it: a batch of photos per call
        n_parts.clear()
        t_pipe.append(timed(lambda: n_parts.extend(len(r.instances) for r in pipe.predict(imgs))))
    t_bare_each, t_bare_all, t_pipe = min(t_each), min(t_all), min(t_pipe)
    t_bare = min(t_bare_each, t_bare_all)
    print(
        f"torch threads {torch.get_num_threads()} (Ultralytics sets cpu_count - 1); "
        f"bare per photo {len(imgs) / t_bare_each:.2f} img/s, one call {len(imgs) / t_bare_all:.2f} img/s"
    )
    print(
        f"bare Ultralytics predict: {len(imgs) / t_bare:.2f} img/s; pipeline (YOLO + ResNet34 per part): "
        f"{len(imgs) / t_pipe:.2f} img/s; ratio {t_bare / t_pipe:.2f}; parts per photo {np.mean(n_parts):.1f}"
    )
    if not np.mean(n_parts):
        print("no parts found (random weights): this run measured no ResNet work; run it again")

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
