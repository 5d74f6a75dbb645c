"""``panelbeater weights add|list|remove``: the checkpoints a team brings, kept in
``<data_dir>/weights/`` by sha256 (``services.training.weights``).

``weights add FILE [--kind K] [--name NAME] [--trust]`` reads the file without running code
it carries, tells its kind (sam, mobile_sam, yolo_seg, resnet34, mask_rcnn, vit) and details,
and stores a copy. An Ultralytics ``.pt`` is a pickle of model objects: it is read with torch's
weights-only loader allowing only torch/Ultralytics module classes; a file naming anything
else is refused unless ``--trust`` is given.
"""

from __future__ import annotations

import json

import typer

from cli.common import fail, store_session
from models.weights import KINDS

weights_app = typer.Typer(
    help="Weights you bring: SAM, MobileSAM, YOLO-seg, ResNet34, Mask R-CNN, ViT.",
    no_args_is_help=True,
)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _summary(details: dict) -> str:
    keys = ("model_type", "task", "class_count", "layout", "size", "patch", "params")
    parts = [f"{k}={details[k]}" for k in keys if details.get(k) is not None]
    return " ".join(parts)


@weights_app.command("add")
def add(
    file: str = typer.Argument(..., help="A checkpoint you downloaded."),
    kind: str | None = typer.Option(
        None, "--kind", help=f"Refuse a file of another kind: {', '.join(KINDS)}."
    ),
    name: str | None = typer.Option(None, "--name", help="Name to use it by (default: stem)."),
    trust: bool = typer.Option(
        False,
        "--trust",
        help="Read a pickle that names classes outside torch/Ultralytics (it can run code).",
    ),
) -> None:
    """Check a checkpoint's kind and store it in the weights folder."""
    from services.errors import ServiceError
    from services.training.weights import add_weights

    if kind is not None and kind not in KINDS:
        fail(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    try:
        rec, new = add_weights(file, kind=kind, name=name, trust=trust)
    except ServiceError as e:
        fail(str(e))
    verb = "added" if new else "already there as"
    typer.echo(f"{verb} {rec.name}: {rec.kind}  {_size(rec.size)}  {_summary(rec.details)}")
    typer.echo(f"  {rec.path}  sha256 {rec.sha256[:12]}")
    if rec.note:
        typer.echo(f"  note: {rec.note}")


@weights_app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON."),
) -> None:
    """The stored weights: kind, size, details and where each is used."""
    from db.session import init_db, session_scope
    from services.training.weights import list_weights, weights_usage

    init_db()
    with session_scope() as session:
        rows = [(r, weights_usage(r, session=session)) for r in list_weights()]
    if as_json:
        typer.echo(json.dumps([{**r.to_dict(), "used_by": u} for r, u in rows], indent=2))
        return
    if not rows:
        typer.echo("no weights yet; add one with `panelbeater weights add FILE`")
        return
    for r, used in rows:
        typer.echo(
            f"{r.name:24} {r.kind:10} {_size(r.size):>10}  {_summary(r.details)}  "
            f"used by: {', '.join(used) or '-'}"
        )


@weights_app.command("remove")
def remove(name: str = typer.Argument(..., help="The weights' name (see `weights list`).")) -> None:
    """Delete stored weights; refused while a setting or a model version uses them."""
    from services.errors import ServiceError
    from services.training.weights import remove_weights

    with store_session(ServiceError) as session:
        rec = remove_weights(name, session=session)
    typer.echo(f"removed {rec.name} ({rec.file})")


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
