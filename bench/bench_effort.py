"""Effort, counted the way a person works: actions per photo per round, with models in the loop.

For each dataset (parts: part_seg on car_parts_dsmlr; damage: damage_seg on car_damage_bilgi)
a fresh store and project are made, as a team would use Panelbeater:

- ``--pool`` photos are imported unlabelled; ``--heldout`` other photos (dsmlr: the last
  ones; bilgi: its valid split) are imported, labelled with their ground truth and put in the
  held-out split, which rounds measure on and never train on;
- round 0: the first ``--batch`` photos of the queue (import order: no model yet) are
  labelled; then each of ``--rounds`` rounds runs the project's own round
  (``jobs.rounds.run_round``: snapshot, train the stage warm-started from its promoted
  version, measure on the held-out split, promote if better, pre-annotate the unlabelled
  photos, re-select the queue), and the next ``--batch`` photos the round selected are
  labelled;
- "labelled" = the simulated annotator (``active_learning.effort``) corrects what the
  workspace would show, with the project's real assistance
  (``services.training.assist.project_assistant``: GrabCut, then assist_net once its own
  auto-training, ``assist_training.train_and_compare``, ran when due and beat GrabCut), and
  the ground truth is saved and the photo marked labelled as a person would. The count is
  read back from the store exactly as the dashboard reads it
  (``services.labelling.effort.stored_photo_effort``).

Printed per round: the stage's held-out primary metric (of the version whose predictions the
batch was shown), actions per photo with pre-annotation, with assistance only (pre-annotation
off, same photos, same assistance), and vertices by hand, and the breakdown of the actions.
Written to ``--out``: ``effort.json`` and ``effort.png``.

The CPU cannot afford the preset's budgets (part_seg / damage_seg train 12 minutes at 192 px
per round): ``--minutes-per-round`` and ``--size`` shrink training, ``--assist-config`` and
``--assist-epochs`` assist_net's auto-training, the same way for every round and dataset; the
baselines need no training. assist_net's auto-training threshold is
``--assist-min-polygons`` (the setting's default is 200).

    .venv/bin/python bench/bench_effort.py [--datasets parts,damage] [--rounds 3]
        [--batch 8] [--pool 40] [--heldout 12] [--minutes-per-round 1.5] [--size 128]

Needs the real datasets (``../shared/datasets`` or PANELBEATER_SHARED_DATASETS).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from torch_threads import add_threads_option, apply_threads  # noqa: E402

DATASETS = Path(os.environ.get("PANELBEATER_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
#: dataset -> the stage that pre-annotates it
STAGES = {"parts": "part_seg", "damage": "damage_seg"}
AUTHOR = "simulated"


def load_records(dataset: str, pool: int, heldout: int):
    """(pool records, held-out records, taxonomy) of ``dataset``."""
    from models.datasets import bilgi_training_set, dsmlr_training_set

    if dataset == "parts":
        full = dsmlr_training_set(DATASETS)
        return full.records[:pool], full.records[-heldout:], full.taxonomy
    train = bilgi_training_set(DATASETS, "train", limit=pool)
    valid = bilgi_training_set(DATASETS, "valid", limit=heldout)
    return train.records, valid.records, train.taxonomy


def link_photos(records, folder: Path) -> dict[str, Any]:
    """Copy the records' photos into ``folder`` (an import refuses links that lead out of
    it); file name -> record."""
    folder.mkdir(parents=True)
    out = {}
    for i, rec in enumerate(records):
        src = Path(rec.meta.get("path") or rec.file_name)
        name = f"{i:04d}{src.suffix.lower()}"
        shutil.copyfile(src, folder / name)
        out[name] = rec
    return out


def label(session, image, record, taxonomy) -> None:
    """Save the photo's ground truth and mark it labelled, as the workspace's submit does."""
    from services.labelling.saves import save_annotations
    from services.labelling.statuses import set_status

    items = [
        {
            "class_id": int(cid),
            "group": taxonomy.by_id(int(cid)).group,
            "geometry": shape.to_json(),
            "attributes": {},
            "source": "manual",
        }
        for shape, cid in zip(record.instances.shapes, record.instances.class_ids, strict=True)
    ]
    save_annotations(
        session,
        image_id=image.id,
        expected_version=image.annotation_version,
        annotations=items,
        author=AUTHOR,
    )
    set_status(session, image_id=image.id, status="labelled", author=AUTHOR)


def round_context(project_id: int):
    from db.models import Job, JobStatus
    from db.session import session_scope
    from jobs.context import JobContext

    with session_scope() as s:
        job = Job(kind="round", params={}, status=JobStatus.running, project_id=project_id)
        s.add(job)
        s.flush()
        job_id = job.id
    return JobContext(job_id, {}, logging.getLogger("bench_effort"))


def run_dataset(dataset: str, args, tmp: Path) -> dict[str, Any]:
    from sqlmodel import select

    from core.config import configure, env_name
    from db.models import Image, ImageStatus
    from db.session import init_db, reset_engine, session_scope
    from jobs.rounds import run_round
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_folder
    from services.labelling.effort import stored_photo_effort
    from services.training import registry
    from services.training.assist import ASSIST_MAX_SIDE, project_assistant
    from services.training.assist_training import POLICY, train_and_compare

    stage = STAGES[dataset]
    pool, held, taxonomy = load_records(dataset, args.pool, args.heldout)
    root = tmp / dataset
    os.environ[env_name("data_dir")] = str(root / "data")
    os.environ[env_name("device")] = "cpu"
    for key in ("assist_autotrain", "part_seg_autotrain", "damage_seg_autotrain"):
        os.environ[env_name(key)] = "0"  # the bench runs the auto-training's work itself
    os.environ[env_name("assist_autotrain_min_polygons")] = str(args.assist_min_polygons)
    configure()
    reset_engine()
    init_db()
    by_name = {"pool/" + k: v for k, v in link_photos(pool, root / "photos" / "pool").items()} | {
        "heldout/" + k: v for k, v in link_photos(held, root / "photos" / "heldout").items()
    }
    with session_scope() as s:
        project = get_or_create_project(s)
        import_folder(s, project, root / "photos")
        images = s.exec(select(Image).where(Image.project_id == project.id)).all()
        held_ids = []
        for im in images:
            if im.file_name.startswith("heldout/"):
                label(s, im, by_name[im.file_name], taxonomy)
                held_ids.append(im.id)
        registry.grow_holdout(s, project, held_ids)
        project_id = project.id
    print(
        f"\n== {dataset}: {stage}, {len(pool)} photos in the pool, {len(held)} held out ==",
        flush=True,
    )
    options = [f"size={args.size}", f"time_budget_s={60 * args.minutes_per_round:g}"]
    rows: list[dict[str, Any]] = []
    batch_ids: list[int] | None = None
    metric: tuple[str, float] | None = None
    for r in range(args.rounds + 1):
        t0 = time.perf_counter()
        with session_scope() as s:
            project = get_or_create_project(s)
            if batch_ids is None:  # round 0: the queue's import order
                batch = s.exec(
                    select(Image)
                    .where(Image.project_id == project_id, Image.status == ImageStatus.new)
                    .order_by(Image.import_order)
                    .limit(args.batch)
                ).all()
            else:
                batch = [s.get(Image, i) for i in batch_ids]
            assistant = project_assistant(s, project)
            totals = {"shown": None, "assist_only": None}
            versions = set()
            for im in batch:
                label(s, im, by_name[im.file_name], taxonomy)
                effort, shown = stored_photo_effort(s, im, assistant, max_side=ASSIST_MAX_SIDE)
                versions |= {mv.name for mv in shown}
                for key in totals:
                    tally = getattr(effort, key)
                    totals[key] = tally if totals[key] is None else totals[key] + tally
            backend = assistant.backend
        n = totals["shown"].photos
        row = {
            "round": r,
            "photos": n,
            "shown_versions": sorted(versions),
            # of the version the last round trained (shown only once promoted)
            "heldout_metric": None if metric is None else {"name": metric[0], "value": metric[1]},
            "assistance": backend,
            "actions_per_photo": totals["shown"].total / n,
            "assist_only_per_photo": totals["assist_only"].total / n,
            "by_hand_per_photo": totals["shown"].by_hand / n,
            "breakdown": totals["shown"].as_dict(),
            "assist_only_breakdown": totals["assist_only"].as_dict(),
            "label_seconds": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        b = row["breakdown"]
        print(
            f"round {r}: {n} photos shown {', '.join(row['shown_versions']) or 'nothing'} "
            f"(held-out {metric[0].removeprefix('holdout.') + f' {metric[1]:.3f}' if metric else '-'}),"
            f" assistance {backend}: {row['actions_per_photo']:.1f} actions/photo | assistance "
            f"only {row['assist_only_per_photo']:.1f} | by hand {row['by_hand_per_photo']:.1f} "
            f"| accept {b['accept']} relabel {b['relabel']} fix {b['fix_clicks']}+"
            f"{b['fix_vertices']}v delete {b['delete']} draw {b['draw_box']}+{b['draw_clicks']}+"
            f"{b['draw_vertices']}v [{row['label_seconds']:.0f} s]",
            flush=True,
        )
        if r == args.rounds:
            break
        # assist_net's auto-training, when its policy says it is due
        with session_scope() as s:
            project = get_or_create_project(s)
            # the policy's own test, minus "enabled": the setting is off so that no job is
            # queued behind the bench's back
            due = POLICY.count(s, project) >= POLICY.next_threshold(s, project)
        if args.assist_epochs > 0 and due:
            t1 = time.perf_counter()
            with session_scope() as s:
                out = train_and_compare(
                    s,
                    get_or_create_project(s),
                    config=args.assist_config,
                    epochs=args.assist_epochs,
                    device="cpu",
                )
            print(
                f"  assist_net auto-trained on {out['polygons']} polygons: held-out mean IoU "
                f"{out['mean_iou']:.3f} vs {out['incumbent']} {out['incumbent_mean_iou']:.3f}, "
                f"{'promoted' if out['promoted'] else 'not kept'} "
                f"[{time.perf_counter() - t1:.0f} s]",
                flush=True,
            )
        t1 = time.perf_counter()
        out = run_round(
            round_context(project_id),
            stages=[stage],
            config=args.preset,
            strategy=args.strategy,
            k=args.batch,
            device="cpu",
            options={stage: options},
        )
        st = out["stages"][stage]
        # the learning curve: the held-out figure of the version this round trained
        metric = registry.primary_metric(st["metrics"] or {}, stage)
        batch_ids = [i for i, _ in out["selection"]["selected"]]
        print(
            f"  round {r + 1} trained {st['version']}: {st['reason']} -> "
            f"{'promoted' if st['promoted'] else 'kept'}; pre-annotated {out['predicted']}; "
            f"selected {len(batch_ids)} by {out['selection']['strategy']} "
            f"[{time.perf_counter() - t1:.0f} s]",
            flush=True,
        )
    return {"dataset": dataset, "stage": stage, "rounds": rows}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    from active_learning.plots import figure_png, new_figure

    plt, fig, _ = new_figure()
    plt.close(fig)
    fig, axes = plt.subplots(1, len(results), figsize=(5.6 * len(results), 4.0), dpi=100)
    axes = axes if len(results) > 1 else [axes]
    for ax, res in zip(axes, results, strict=True):
        rounds = [r["round"] for r in res["rounds"]]
        ax.plot(rounds, [r["actions_per_photo"] for r in res["rounds"]], "o-", label="Panelbeater")
        ax.plot(
            rounds,
            [r["assist_only_per_photo"] for r in res["rounds"]],
            "s--",
            label="assistance only",
        )
        ax.plot(
            rounds, [r["by_hand_per_photo"] for r in res["rounds"]], "^:", label="vertices by hand"
        )
        ax.set_xlabel("round")
        ax.set_ylabel("actions per photo")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{res['dataset']} ({res['stage']})")
        ax2 = ax.twinx()
        pts = [
            (r["round"], r["heldout_metric"]["value"]) for r in res["rounds"] if r["heldout_metric"]
        ]
        if pts:
            ax2.plot(*zip(*pts, strict=True), "x-", color="grey", label="held-out metric")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("held-out metric (grey)")
        ax.legend(fontsize=8, loc="lower left")
        ax.xaxis.get_major_locator().set_params(integer=True)
    path.write_bytes(figure_png(plt, fig))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="parts,damage")
    ap.add_argument("--rounds", type=int, default=3, help="retraining rounds after round 0")
    ap.add_argument("--batch", type=int, default=8, help="photos labelled per round")
    ap.add_argument("--pool", type=int, default=40, help="unlabelled photos imported")
    ap.add_argument("--heldout", type=int, default=12)
    ap.add_argument("--minutes-per-round", type=float, default=1.5, help="training time budget")
    ap.add_argument("--size", type=int, default=128, help="training and prediction size")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--strategy", default="hybrid")
    ap.add_argument("--assist-config", default="tiny")
    ap.add_argument("--assist-epochs", type=int, default=2, help="0: no assist_net")
    ap.add_argument("--assist-min-polygons", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "effort")
    add_threads_option(ap)
    args = ap.parse_args()
    apply_threads(args)
    if not DATASETS.is_dir():
        raise SystemExit(
            f"{DATASETS} does not exist: this benchmark needs the real datasets "
            "(set PANELBEATER_SHARED_DATASETS)"
        )
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="pb-effort-"))
    t0 = time.perf_counter()
    results = [run_dataset(d.strip(), args, tmp) for d in args.datasets.split(",") if d.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    for res in results:
        first, last = res["rounds"][0], res["rounds"][-1]
        res["target"] = {
            "last_vs_by_hand": last["actions_per_photo"] / last["by_hand_per_photo"],
            "below_half_of_by_hand": last["actions_per_photo"] <= 0.5 * last["by_hand_per_photo"],
            "below_round_0": last["actions_per_photo"] < first["actions_per_photo"],
        }
    (args.out / "effort.json").write_text(json.dumps(summary, indent=2))
    plot(results, args.out / "effort.png")
    print("\ndataset  round  photos  actions/photo  assistance only  by hand")
    for res in results:
        for r in res["rounds"]:
            print(
                f"{res['dataset']:<8} {r['round']:5d} {r['photos']:7d} {r['actions_per_photo']:14.1f} "
                f"{r['assist_only_per_photo']:16.1f} {r['by_hand_per_photo']:8.1f}"
            )
        t = res["target"]
        print(
            f"{res['dataset']}: last round at {t['last_vs_by_hand']:.0%} of by hand "
            f"(target <= 50%: {'met' if t['below_half_of_by_hand'] else 'NOT met'}); lower than "
            f"round 0: {'yes' if t['below_round_0'] else 'NO'}"
        )
    print(f"\n{time.perf_counter() - t0:.0f} s in all; {args.out / 'effort.json'}, effort.png")


if __name__ == "__main__":
    main()
