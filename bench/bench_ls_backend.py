"""The Label Studio ML backend through a real Label Studio: predict latency per task (10 tasks,
1024-px photos, a promoted part_seg with random weights, so timing only) and interactive
latency per click (the project's assistance back end: GrabCut here, as no SAM weights are
configured; the first click on a photo prepares it, the next ones reuse it).

    .venv/bin/python bench/bench_ls_backend.py [--tasks 10] [--side 1024] [--clicks 10]

Needs Label Studio in ``$PANELBEATER_LS_VENV`` (``.ci/label_studio.sh``).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def photos(n: int, side: int) -> list[tuple[str, bytes]]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = side * 3 // 4, side
    out = []
    for i in range(n):
        img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        img[h // 4 : 3 * h // 4, w // 5 + 10 * i : 3 * w // 5 + 10 * i] = 210
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        out.append((f"car{i}.jpg", buf.getvalue()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--clicks", type=int, default=10)
    args = ap.parse_args()

    import httpx
    from label_studio_sdk import LabelStudio
    from ls_helpers import (
        LEAD,
        LEAD_PASSWORD,
        TOKEN,
        label_studio,
        polygon_config,
        random_part_seg,
        seed_backend_store,
        serve_in_thread,
        upload_images,
    )

    from api.ls_backend import create_ls_backend
    from core.taxonomy import default_taxonomy

    names = [c.name for c in default_taxonomy()]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ls").mkdir()
        with label_studio(root / "ls") as ls_url:
            seed_backend_store(root / "pb", ls_url, random_part_seg(root / "part_seg.pt"))
            with serve_in_thread(create_ls_backend()) as backend_url:
                client = LabelStudio(base_url=ls_url, api_key=TOKEN, timeout=300)
                project = client.projects.create(title="bench", label_config=polygon_config(names))
                ml = client.ml.create(
                    project=project.id,
                    url=backend_url,
                    auth_method="BASIC_AUTH",
                    basic_auth_user=LEAD,
                    basic_auth_pass=LEAD_PASSWORD,
                    is_interactive=True,
                )
                task_ids = upload_images(ls_url, project.id, photos(args.tasks, args.side))
                t0 = time.perf_counter()
                client.actions.create(
                    id="retrieve_tasks_predictions",
                    project=project.id,
                    selected_items={"all": True, "excluded": []},
                )
                batch = time.perf_counter() - t0
                tasks = list(client.tasks.list(project=project.id, fields="all"))
                done = sum(
                    1
                    for t in tasks
                    for p in t.predictions or []
                    if not str(p.model_version).endswith(")")
                )
                regions = sum(len(p.result) for t in tasks for p in t.predictions or [])
                print(
                    f"predict through Label Studio: {args.tasks} tasks at {args.side}x"
                    f"{args.side * 3 // 4} px in {batch:.1f} s = {batch / args.tasks:.2f} s/task "
                    f"({done} predicted, {regions} regions)"
                )
                w, h = args.side, args.side * 3 // 4
                times = []
                for k in range(args.clicks):
                    click = {
                        "type": "keypointlabels",
                        "original_width": w,
                        "original_height": h,
                        "is_positive": True,
                        "value": {"x": 40.0 + k, "y": 50.0, "keypointlabels": ["dent"]},
                    }
                    t0 = time.perf_counter()
                    r = httpx.post(
                        f"{ls_url}/api/ml/{ml.id}/interactive-annotating",
                        headers={"Authorization": f"Token {TOKEN}"},
                        json={"task": task_ids[0], "context": {"result": [click]}},
                        timeout=120,
                    )
                    times.append(time.perf_counter() - t0)
                    r.raise_for_status()
                    assert "errors" not in r.json(), r.json()
                print(
                    f"interactive click through Label Studio ({args.side}-px photo): first "
                    f"{times[0] * 1000:.0f} ms (prepares the photo), then median "
                    f"{statistics.median(times[1:]) * 1000:.0f} ms over {len(times) - 1} clicks"
                )


if __name__ == "__main__":
    main()
