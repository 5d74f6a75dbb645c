"""Concurrent saves and kill -9: throughput, latency and acknowledged saves lost.

10 annotators each save their own photo as fast as the server answers, against a real
``panelbeater serve`` on loopback (its own process group). First a steady run gives saves
per second and the p50/p95/max latency of the saves answered 200; then the server's group is
killed with kill -9 during the burst and restarted, ``--kills`` times. Afterwards every save
that was answered 200, in either run, must be in the store with the geometry it was answered
with; the revision history must have no gaps; SQLite's ``PRAGMA integrity_check`` must say ok.

    .venv/bin/python bench/bench_durability.py [--seconds 20] [--kills 5] [--backends sqlite,postgres]

PostgreSQL needs ``PANELBEATER_TEST_POSTGRES_URL`` (``eval "$(bash .ci/postgres.sh)"`` starts
a server on loopback); each run gets a fresh database on it. Exits 1 when a save was lost.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser_helpers import free_port  # noqa: E402
from durability_helpers import (  # noqa: E402
    KillableServer,
    bench_database_url,
    kill_run,
    latency_figures,
    lost_saves,
    seed,
)


def bench_backend(backend: str, work: Path, args: argparse.Namespace) -> dict:
    url = bench_database_url(backend)
    ws = seed(work / backend, annotators=args.annotators, database_url=url)
    server = KillableServer(ws, port=free_port(), full=not args.api_only)

    steady = kill_run(ws, server, kills=0, tail_s=args.warmup + args.seconds)
    measured_from = steady.began + args.warmup
    window = [a for a in steady.acks if a.at >= measured_from]
    crash = kill_run(ws, server, kills=args.kills, saves_between_kills=args.saves_between_kills)
    check = lost_saves(ws, steady.acks + crash.acks)
    return {
        "backend": backend,
        "annotators": args.annotators,
        "saves_per_s": round(len(window) / (steady.ended - measured_from), 1),
        **{k: round(v, 1) for k, v in latency_figures(window).items()},
        "steady_saves": len(window),
        "kills": crash.kills,
        "saves_during_kills": len(crash.acks),
        "server_start_s": [round(s, 1) for s in steady.start_s + crash.start_s],
        "answers_cut_off": crash.transport_errors,
        "other_answers": len(steady.unexpected) + len(crash.unexpected),
        "acknowledged": check.acknowledged,
        "lost": len(check.lost),
        "revision_gaps": len(check.revision_gaps),
        "integrity": check.integrity,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--annotators", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0, help="steady run, measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="steady run, not measured")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--saves-between-kills", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--api-only", action="store_true", help="uvicorn with the REST API alone, no Gradio"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pb-bench-durability-") as tmp:
        for backend in args.backends.split(","):
            rows.append(bench_backend(backend.strip(), Path(tmp), args))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(
        f"{'backend':9} {'saves/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
        f"{'kills':>5} {'acked':>6} {'lost':>5} {'gaps':>5}  integrity"
    )
    for r in rows:
        print(
            f"{r['backend']:9} {r['saves_per_s']:8.1f} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
            f"{r['max_ms']:7.1f} {r['kills']:5d} {r['acknowledged']:6d} {r['lost']:5d} "
            f"{r['revision_gaps']:5d}  {r['integrity']}"
        )
    bad = [r for r in rows if r["lost"] or r["revision_gaps"] or r["integrity"] != "ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
