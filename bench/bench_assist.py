"""Assistance quality and latency.

    .venv/bin/python bench/bench_assist.py [--assist-net PATH] [--parts 200] [--train-epochs 4] [--no-sam]
    .venv/bin/python bench/bench_assist.py --sam-breakdown [--repeats 5]

Quality: mean/median IoU against the labelled polygon, box prompt = the part's box, on
car_parts_dsmlr photos 301-400, which the learned net never trains on (it trains on photos
1-300 when no --assist-net file is given), for GrabCut, assist_net and box-as-mask.
Latency: p50 of predict (decoder + mask-to-polygon) with the per-image work already done,
on a 1024-px photo; and the time of SAM ViT-B's image embedding (random weights, timing only).
Timings on a shared 2-core CPU are noisy.

``--sam-breakdown`` only times SAM ViT-B (random weights) on that 1024-px photo, per prompt
(the photo's part boxes): SamPredictor.predict (all candidates upsampled to full size) against
the assistant's windowed path, the decoder alone, tracing the random-weight mask into polygons,
and tracing the labelled part masks at 1024 px, which stand in for the smooth masks that real
SAM weights give (random weights give speckled masks whose tracing dominates).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torch_threads import add_threads_option, apply_threads  # noqa: E402

from models.data import TrainingSet  # noqa: E402
from models.datasets import dsmlr_training_set  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"


def quality(name: str, fn, held: TrainingSet, parts: int) -> dict:
    from models.assist.learned import evaluate_box_prompts

    t0 = time.perf_counter()
    r = evaluate_box_prompts(fn, held, parts)
    r["seconds"] = time.perf_counter() - t0
    print(
        f"{name:12s} parts {r['parts']}  mean IoU {r['mean_iou']:.3f}  median {r['median_iou']:.3f}  "
        f"(box-as-mask {r['box_mean_iou']:.3f})  {r['seconds']:.1f}s",
        flush=True,
    )
    return r


def full_mask(assistant, img, box):
    assistant.set_image(img)
    res = assistant.predict(box=box)
    h, w = img.shape[:2]
    return res.shape.to_mask(h, w) if res.shape is not None else np.zeros((h, w), bool)


def latency(assistant, img, boxes, repeats: int = 3) -> float:
    assistant.set_image(img)
    times = []
    for _ in range(repeats):
        for b in boxes:
            t0 = time.perf_counter()
            assistant.predict(box=b)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def p50(times: list[float]) -> str:
    return f"p50 {statistics.median(times):6.1f} ms (min {min(times):5.1f}, n {len(times)})"


def timed(fn) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def sam_breakdown(repeats: int) -> None:
    """Per-prompt SAM ViT-B figures with the embedding cached (see the module docstring)."""
    import os

    import cv2
    import torch

    from models.assist.sam import SamAssistant, _crop_to_content

    print(f"load average {os.getloadavg()}, torch threads {torch.get_num_threads()}", flush=True)
    ts = dsmlr_training_set(DATASETS, limit=301)
    rec = ts.records[300]
    img = cv2.resize(ts.load_image(300), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    sx, sy = 1024 / rec.width, 1024 / rec.height
    parts = [s.scaled(sx, sy) for s in rec.instances.shapes][:10]
    torch.manual_seed(0)  # the same random weights (and speckled masks) on every run
    t0 = time.perf_counter()
    sam = SamAssistant("vit_b", None, cache_dir=None, device="cpu")
    print(f"build (random weights) {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    sam.set_image(img)
    print(f"image embedding {time.perf_counter() - t0:.1f}s", flush=True)
    p, model = sam.predictor, sam.predictor.model
    t0 = time.perf_counter()
    sam.set_image(img)  # embedding now cached: what is left is the per-image decoder state
    print(f"set_image, embedding cached {(time.perf_counter() - t0) * 1000:.0f} ms", flush=True)
    names = ("SamPredictor.predict+crop", "SAM mask_decoder only", "cached decoder only")
    names += ("windowed decoder+upsample", "trace random mask", "trace labelled part")
    names += ("trace labelled car (union)", "predict() end to end", "old path end to end")
    t: dict[str, list[float]] = {k: [] for k in names}
    verts_random, verts_real, area_random, area_real = [], [], [], []
    car = _crop_to_content(np.any([s.to_mask(1024, 1024) for s in parts], axis=0), 1.0)
    car_res = sam._to_result(*car)
    print(
        f"labelled car (union of parts): {int(car[0].sum())} px, {car_res.shape.num_vertices} vertices"
    )
    for _ in range(repeats):
        for shape in parts:
            box = shape.bbox
            with torch.inference_mode():
                (masks, scores, _), ms = timed(
                    lambda b=box: p.predict(box=b.astype(np.float32), multimask_output=False)
                )
                crop, ms2 = timed(
                    lambda m=masks, s=scores: _crop_to_content(m[int(np.argmax(s))], 0)
                )
                t["SamPredictor.predict+crop"].append(ms + ms2)
                t["old path end to end"].append(
                    ms + ms2 + timed(lambda c=crop: sam._to_result(*c))[1]
                )
                bt = torch.as_tensor(p.transform.apply_boxes(box[None], p.original_size)).float()

                def decode(bt=bt):
                    sp, de = model.prompt_encoder(points=None, boxes=bt, masks=None)
                    return model.mask_decoder(
                        image_embeddings=p.features,
                        image_pe=sam._dense_pe(),
                        sparse_prompt_embeddings=sp,
                        dense_prompt_embeddings=de,
                        multimask_output=False,
                    )

                t["SAM mask_decoder only"].append(timed(decode)[1])
                sp, _ = model.prompt_encoder(points=None, boxes=bt, masks=None)
                t["cached decoder only"].append(timed(lambda s=sp: sam._state.decode(s, False))[1])
            window, ms = timed(lambda b=box: sam._predict_mask(np.zeros((0, 2)), np.zeros(0), b))
            t["windowed decoder+upsample"].append(ms)
            res, ms = timed(lambda w=window: sam._to_result(*w))
            t["trace random mask"].append(ms)
            verts_random.append(0 if res.shape is None else res.shape.num_vertices)
            area_random.append(int(window[0].sum()))
            real = _crop_to_content(shape.to_mask(1024, 1024), 1.0)
            res, ms = timed(lambda r=real: sam._to_result(*r))
            t["trace labelled part"].append(ms)
            verts_real.append(0 if res.shape is None else res.shape.num_vertices)
            area_real.append(int(real[0].sum()))
            res, ms = timed(lambda: sam._to_result(*car))
            t["trace labelled car (union)"].append(ms)
            t["predict() end to end"].append(timed(lambda b=box: sam.predict(box=b))[1])
    for k in names:
        print(f"{k:28s} {p50(t[k])}")
    print(
        f"random-weight masks: median {statistics.median(area_random)} px, "
        f"{statistics.median(verts_random)} vertices; labelled part masks: median "
        f"{statistics.median(area_real)} px, {statistics.median(verts_real)} vertices"
    )
    dec = statistics.median(t["windowed decoder+upsample"])
    for k in ("trace labelled part", "trace labelled car (union)"):
        est = dec + statistics.median(t[k])
        print(f"decoder+polygon with a smooth mask (windowed + {k} p50s): {est:.1f} ms")
    print(f"load average {os.getloadavg()} (timings on a shared 2-core CPU are noisy)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assist-net", type=Path)
    ap.add_argument("--parts", type=int, default=200)
    ap.add_argument("--train-epochs", type=int, default=4)
    ap.add_argument("--no-sam", action="store_true")
    ap.add_argument("--sam-breakdown", action="store_true", help="only the SAM ViT-B latency parts")
    ap.add_argument(
        "--repeats", type=int, default=5, help="passes over the prompts (--sam-breakdown)"
    )
    add_threads_option(ap)
    args = ap.parse_args()

    apply_threads(args)
    if args.sam_breakdown:
        sam_breakdown(args.repeats)
        return
    from models.assist.grabcut import BoxAssistant, GrabCutAssistant
    from models.assist.learned import AssistNetConfig, AssistNetStage, LearnedAssistant

    ts = dsmlr_training_set(DATASETS)
    train, held = (
        TrainingSet(ts.records[:300], ts.taxonomy),
        TrainingSet(ts.records[300:], ts.taxonomy),
    )
    if args.assist_net:
        stage = AssistNetStage.load(args.assist_net, device="cpu")
    else:
        stage = AssistNetStage(
            AssistNetConfig.from_preset("small", epochs=args.train_epochs, device="cpu")
        )
        r = stage.train(
            train,
            progress=lambda e, n, i: print(f"train epoch {e}/{n} loss {i['loss']:.3f}", flush=True),
            out_path=Path(tempfile.gettempdir()) / "assist_net-bench.pt",
        )
        print(f"trained on {r.metrics['train_parts']} parts in {r.metrics['train_seconds']:.0f}s")
    learned = LearnedAssistant(stage)
    grab = GrabCutAssistant()
    print(f"== quality on dsmlr photos 301-400 (held out), up to {args.parts} parts ==")
    q_learned = quality("assist_net", lambda im, b: full_mask(learned, im, b), held, args.parts)
    q_grab = quality("grabcut", lambda im, b: full_mask(grab, im, b), held, args.parts)
    best = max(q_learned["mean_iou"], q_grab["mean_iou"])
    print(
        f"best weight-free minus box-as-mask: {best - q_learned['box_mean_iou']:+.3f} (need >= +0.10)"
    )

    import cv2

    print("== latency on a 1024-px photo (embedding cached / per-image work done) ==")
    rec = held.records[0]
    img = cv2.resize(held.load_image(0), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    boxes = [s.bbox * 2 for s in rec.instances.shapes][:10]
    for name, a in (("assist_net", learned), ("grabcut", grab), ("box", BoxAssistant())):
        print(f"{name:12s} p50 {latency(a, img, boxes):.1f} ms per prompt", flush=True)
    if not args.no_sam:
        from models.assist.sam import SamAssistant

        t0 = time.perf_counter()
        sam = SamAssistant("vit_b", None, cache_dir=None, device="cpu")
        print(f"sam_vit_b    build (random weights) {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        sam.set_image(img)
        print(f"sam_vit_b    image embedding {time.perf_counter() - t0:.1f}s")
        print(
            f"sam_vit_b    p50 {latency(sam, img, boxes, repeats=2):.1f} ms per prompt (decoder + polygon)"
        )


if __name__ == "__main__":
    main()
