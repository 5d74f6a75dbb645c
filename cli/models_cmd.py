"""CLI: ``train STAGE``, ``predict STAGE``, ``evaluate STAGE``. ``register(app)`` adds them."""

from __future__ import annotations

import json

import typer

from cli.common import fail
from models.registry import stage_names


def _project(session):
    from core.config import get_settings
    from db.session import init_db
    from services.accounts.projects import get_or_create_project

    init_db()
    return get_or_create_project(session, get_settings().project_name)


def _check_stage(stage: str) -> None:
    if stage not in stage_names():
        fail(f"unknown stage {stage!r}; choose one of {', '.join(stage_names())}")


def train_cmd(
    stage: str = typer.Argument(..., help=", ".join(stage_names())),
    config: str = typer.Option(
        "tiny", "--config", help="Preset: tiny (CPU tests), small, base (GPU)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the preset's epochs."),
    device: str = typer.Option(
        "auto", "--device", help="auto, cpu, cuda; yolo_seg also takes a GPU list such as 0,1."
    ),
    promote: bool = typer.Option(
        False,
        "--promote",
        help="Make the new version the stage's current one if it beats it on the held-out split.",
    ),
    force_promote: bool = typer.Option(
        False, "--force-promote", help="Make the new version the current one even if not better."
    ),
    weights: str | None = typer.Option(
        None,
        "--weights",
        help="A local weights file to start from (a COCO YOLO .pt, ImageNet ResNet34, COCO "
        "Mask R-CNN or ViT state dict); the version records it with its sha256.",
    ),
    options: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config field, e.g. --set lr=0.0005 --set batch_size=4 (repeatable).",
    ),
) -> None:
    """Train a stage on the labelled images and register a new version with its metrics."""
    from db.session import session_scope
    from models.base import CheckpointError, StageError
    from models.registry import config_class
    from services.errors import ServiceError
    from services.training.bar import measured_lines
    from services.training.lifecycle import train_stage

    _check_stage(stage)

    def progress(step: int, total: int, info: dict) -> None:
        loss = info.get("loss")
        typer.echo(
            f"epoch {step}/{total}" + (f"  loss {loss:.4f}" if isinstance(loss, float) else "")
        )

    try:
        with session_scope() as session:
            mv = train_stage(
                session,
                _project(session),
                stage,
                config=config,
                epochs=epochs,
                device=device,
                progress=progress,
                promote=promote,
                force_promote=force_promote,
                evaluate=True,
                options=config_class(stage).parse_options(options),
                weights=weights,
            )
            if mv is None:  # a torchrun rank other than 0: rank 0 registers
                typer.echo("this rank finished; rank 0 registers the version")
            else:
                typer.echo(f"registered {mv.name}  sha256 {mv.sha256[:12]}  {mv.path}")
                for line in measured_lines(mv):
                    typer.echo(line)
                typer.echo((mv.metrics or {}).get("promotion", {}).get("reason", ""))
    except (ServiceError, StageError, CheckpointError, ValueError) as e:
        fail(str(e))


def predict_cmd(
    stage: str = typer.Argument(..., help="The stage whose version pre-annotates."),
    version: str | None = typer.Option(
        None, "--version", help="albert-v3, v3 or 3 (default: current)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="At most this many images."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Pre-annotate the images this version has not processed yet (Ctrl-C stops; run again to resume)."""
    from tqdm import tqdm

    from db.session import session_scope
    from models.base import CheckpointError
    from services.errors import ServiceError
    from services.training.model_runs import predict_stage

    _check_stage(stage)
    bar: tqdm | None = None
    stop = {"now": False}

    def progress(step: int, total: int, info: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="img", desc=stage)
        bar.update(1)

    n = 0
    try:
        with session_scope() as session:
            try:
                n = predict_stage(
                    session,
                    _project(session),
                    stage,
                    version=version,
                    limit=limit,
                    device=device,
                    progress=progress,
                    should_stop=lambda: stop["now"],
                )
            except KeyboardInterrupt:
                # every finished image is already committed; the next run resumes after them
                stop["now"] = True
                typer.echo("\nstopped; run the same command again to resume")
    except (ServiceError, CheckpointError, ValueError) as e:
        fail(str(e))
    finally:
        if bar is not None:
            bar.close()
    typer.echo(f"predicted {n} image(s)")


def evaluate_cmd(
    stage: str = typer.Argument(...),
    version: str | None = typer.Option(None, "--version"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Measure a version on the held-out split and print its figures."""
    from db.session import session_scope
    from models.base import CheckpointError
    from services.errors import ServiceError
    from services.training.model_runs import evaluate_stage

    _check_stage(stage)
    try:
        with session_scope() as session:
            figures = evaluate_stage(
                session, _project(session), stage, version=version, device=device
            )
    except (ServiceError, CheckpointError, ValueError) as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(figures, indent=2, default=float))
    else:
        for k, v in figures.items():
            typer.echo(f"{k}: {v}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("predict")(predict_cmd)
    app.command("evaluate")(evaluate_cmd)
