"""The ``--threads`` option the model benchmarks share (the ``torch_threads`` setting, for one run)."""

from __future__ import annotations

import argparse


def add_threads_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads (the recorded figures used 2; 0: torch's own choice)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    from models.runtime import set_torch_threads

    set_torch_threads(args.threads or None)
