"""CLI: ``select``, ``worker``, ``round start|status``, ``jobs``. ``register(app)`` adds them."""

from __future__ import annotations

import json
import time

import typer

from cli.common import fail, open_project, store_session

round_app = typer.Typer(
    help="Retraining rounds: train, evaluate, promote, pre-annotate, re-select.",
    no_args_is_help=True,
)


def select_cmd(
    strategy: str = typer.Option(
        "hybrid",
        "--strategy",
        "-s",
        help="random, stratified, uncertainty, committee, kcenter, hybrid, cold_start, maxherding, typiclust, stratified_entropy, auto (coverage while few are labelled; provisional)",
    ),
    k: int = typer.Option(50, "--k", "-k", help="How many photos to put at the head of the queue."),
    balance: bool = typer.Option(False, "--balance", help="Class-balance constraint (hybrid)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recompute the annotation queue and print the chosen image ids with their scores."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.errors import ServiceError
    from services.training.selection import select

    open_project()
    info: dict = {}
    try:
        with session_scope() as s:
            picks = select(
                s,
                get_or_create_project(s),
                strategy=strategy,
                k=k,
                balance=balance,
                seed=seed,
                info=info,
            )
    except ServiceError as e:
        fail(str(e))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "strategy": strategy,
                    "k": k,
                    "selected": [{"image_id": i, "score": v} for i, v in picks],
                    "pool": info,
                }
            )
        )
        return
    typer.echo(
        f"{strategy}: {len(picks)} photos now lead the queue ({'; '.join(info.get('notes', [])) or 'no model embeddings'})"
    )
    for rank, (i, v) in enumerate(picks, 1):
        typer.echo(f"{rank:>4}  image {i:<8} score {v:.4f}")


def worker_cmd(
    workers: int = typer.Option(1, "--workers", help="Jobs run at once in this worker."),
    max_delay: float = typer.Option(
        2.0, "--max-delay", help="Longest wait between queue polls (s)."
    ),
) -> None:
    """Run a background job worker in the foreground (Ctrl-C stops it)."""
    from jobs.worker import run_worker

    run_worker(workers=workers, max_delay=max_delay)


def _print_job(j: dict) -> None:
    bits = [f"job {j['id']} {j['kind']}: {j['status']}", f"{100 * j['progress']:.0f}%"]
    if j.get("stage"):
        bits.append(j["stage"])
    if j.get("epoch") is not None:
        bits.append(f"epoch {j['epoch']}")
    if j.get("loss") is not None:
        bits.append(f"loss {j['loss']:.4f}")
    if j.get("error"):
        bits.append(f"error: {j['error']}")
    typer.echo(" | ".join(bits))


@round_app.command("start")
def round_start(
    stages: str | None = typer.Option(
        None, "--stages", help="Comma-separated stages (default: the promoted ones, else yolo_seg)."
    ),
    config: str = typer.Option("tiny", "--config", help="tiny, small or base"),
    epochs: int | None = typer.Option(None, "--epochs"),
    strategy: str = typer.Option("hybrid", "--strategy"),
    k: int = typer.Option(50, "--k"),
    force_promote: bool = typer.Option(
        False, "--force-promote", help="Promote the new versions even if not better."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda"),
    from_scratch: str | None = typer.Option(
        None,
        "--from-scratch",
        help="Comma-separated stages that start over instead of fine-tuning their promoted version.",
    ),
    pseudo_labels: bool | None = typer.Option(
        None,
        "--pseudo-labels/--no-pseudo-labels",
        help="Also train on the promoted versions' confident predictions of unlabelled photos "
        "(default: the pseudo_labels setting).",
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the job's progress until it ends."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Queue a retraining round (a worker must be running: `panelbeater worker` or `serve`)."""
    from db.session import session_scope
    from jobs.service import get_job, job_dict, start_round
    from services.errors import ServiceError

    with store_session(ServiceError) as s:
        job = start_round(
            s,
            stages=[x.strip() for x in stages.split(",")] if stages else None,
            config=config,
            epochs=epochs,
            strategy=strategy,
            k=k,
            force_promote=force_promote,
            device=device,
            from_scratch=[x.strip() for x in from_scratch.split(",")] if from_scratch else None,
            pseudo_labels=pseudo_labels,
            created_by="cli",
        )
        job_id = job.id
    while True:
        with session_scope() as s:
            j = job_dict(get_job(s, job_id))
        if not wait or j["status"] in ("completed", "failed", "cancelled"):
            break
        _print_job(j)
        time.sleep(2)
    typer.echo(json.dumps(j, indent=1)) if as_json else _print_job(j)
    if j["status"] == "failed":
        raise typer.Exit(1)


@round_app.command("status")
def round_status(
    job_id: int = typer.Argument(...), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Show a job's progress."""
    from jobs.service import get_job, job_dict
    from services.errors import ServiceError

    with store_session(ServiceError) as s:
        j = job_dict(get_job(s, job_id))
    typer.echo(json.dumps(j, indent=1)) if as_json else _print_job(j)


def register(app: typer.Typer) -> None:
    app.command("select")(select_cmd)
    app.command("worker")(worker_cmd)
    app.add_typer(round_app, name="round")
