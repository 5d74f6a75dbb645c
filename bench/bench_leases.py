"""Annotators pressing "next" at once: no photo handed to two people, and how fast.

20 annotators (one thread each, started together) each take ``/api/queue/next``, save one
polygon on the photo they got and mark it labelled, ``--photos-each`` times, against a real
server on loopback (uvicorn serving the app without its Gradio UI, ``create_app(ui=False)``:
the REST API with its middleware and commit hooks, in a child process). A photo marked
labelled leaves the queue, so any photo handed to two different annotators is a double
hand-out. Prints, per database, the double hand-out count, saves per second, the p50/p95 of
``next`` and of the save, and the server's CPU time per next-save-status cycle (ms) and its
share of one core.

    .venv/bin/python bench/bench_leases.py [--annotators 20] [--photos-each 10] \\
        [--backends sqlite,postgres]

The goal on the 2-core machine, clients included: 10 annotators at >= 40 saves/s with a save
p95 <= 300 ms (``--annotators 10 --photos-each 30``).

PostgreSQL needs ``PANELBEATER_TEST_POSTGRES_URL`` (``eval "$(bash .ci/postgres.sh)"`` starts
a server on loopback); each run gets a fresh database on it. Exits 1 on a double hand-out.
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
from durability_helpers import KillableServer, Workspace, bench_database_url  # noqa: E402
from lease_helpers import run_load, seed_queue  # noqa: E402


def bench_backend(backend: str, work: Path, args: argparse.Namespace) -> dict:
    from core.config import configure
    from db.session import init_db, reset_engine

    url = bench_database_url(backend)
    data = work / backend
    configure(data_dir=data, database_url=url, start_worker=False)
    reset_engine()
    init_db()
    # Spare photos, so that nobody runs out while the others finish.
    photos = args.annotators * (args.photos_each + 1)
    tokens = seed_queue(data, photos=photos, annotators=args.annotators)
    server = KillableServer(Workspace(data, url, [], tokens), port=free_port())
    server.start()
    cpu_before = server.cpu_seconds()
    try:
        result = run_load(server.url, tokens, photos_each=args.photos_each)
        cpu = server.cpu_seconds() - cpu_before
    finally:
        server.stop()
        reset_engine()
    cycles = max(1, len(result.save_s))
    return {
        "backend": backend,
        "annotators": args.annotators,
        **result.figures(),
        "server_cpu_ms_per_cycle": round(1000 * cpu / cycles, 1),
        "server_core_share": round(cpu / result.wall_s, 2) if result.wall_s else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--photos-each", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    # Users never sign in here (tokens are issued directly): a cheap password hash saves
    # seconds of scrypt per annotator and changes nothing measured.
    import services.accounts.users

    services.accounts.users._scrypt_n_for_tests = 2**10
    rows = []
    with tempfile.TemporaryDirectory(prefix="pb-bench-leases-") as tmp:
        for backend in args.backends.split(","):
            rows.append(bench_backend(backend.strip(), Path(tmp), args))
            print(json.dumps(rows[-1]), flush=True)
    if any(r["double_handouts"] or r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
