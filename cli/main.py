"""``panelbeater``: the command-line interface. Every command calls the service layer."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import typer

from cli.common import fail, open_project, store_session
from core.config import configure, env_name, get_settings

app = typer.Typer(
    name="panelbeater",
    help="Label car damage, fake damage and car parts with models in the loop.",
    no_args_is_help=True,
    add_completion=False,
)
import_app = typer.Typer(help="Import images and labels into the project.", no_args_is_help=True)
export_app = typer.Typer(help="Export the project's labels.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")


@app.callback()
def main_options(
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help=f"Data directory (default ./panelbeater-data or ${env_name('data_dir')}).",
    ),
    project: str | None = typer.Option(None, "--project", help="Project name (default 'default')."),
) -> None:
    overrides = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if project is not None:
        overrides["project_name"] = project
    if overrides:
        base = get_settings().model_dump()
        configure(**{**base, **overrides})
    # every command (serve and worker included) starts here: apply the process-wide
    # settings once, before any model is built
    from models.runtime import apply_process_settings

    apply_process_settings(get_settings())
    from jobs.autotrain import listen as queue_autotraining_on_commit
    from jobs.slot_predictions import listen as preannotate_slot_photos_on_commit

    queue_autotraining_on_commit()
    preannotate_slot_photos_on_commit()


# -- taxonomy -------------------------------------------------------------------


@app.command()
def taxonomy(
    as_json: bool = typer.Option(False, "--json", help="Print the classes as JSON."),
    file: Path | None = typer.Option(
        None, "--file", help="Validate and show this taxonomy file instead."
    ),
) -> None:
    """Show (or validate) the label set: damage, fake-damage and part classes."""
    from core.taxonomy import TaxonomyError, load_taxonomy

    try:
        tax = load_taxonomy(file or get_settings().taxonomy_path)
    except TaxonomyError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(tax.as_list(), indent=1))
        return
    typer.echo(f"{tax.source}: {tax.summary()}")
    for group in tax.counts():
        names = ", ".join(c.name for c in tax.group(group))
        typer.echo(f"\n[{group}] {names}")


# -- import ---------------------------------------------------------------------


def _import_with(
    map_file: Path | None, importer, *args: object, bar: str | None = None, **kwargs: object
) -> None:
    """``importer(session, project, *args, label_map=..., **kwargs)`` in one transaction on
    the open project, with a progress bar named ``bar`` passed as ``progress`` when given. On
    a format, taxonomy or input error nothing is kept and the command stops with the error's
    sentence; otherwise the report is printed."""
    from tqdm import tqdm

    from core.records import load_label_map
    from core.taxonomy import TaxonomyError
    from db.session import session_scope
    from exports.errors import FormatError
    from services.accounts.projects import get_or_create_project
    from services.errors import Invalid

    open_project()
    try:
        label_map = load_label_map(map_file)
        with (
            session_scope() as session,
            tqdm(desc=bar, unit="img", disable=None if bar else True) as progress_bar,
        ):

            def progress(done: int, total: int) -> None:
                progress_bar.total = total
                progress_bar.n = done
                progress_bar.refresh()

            if bar:
                kwargs["progress"] = progress
            project = get_or_create_project(session)
            report = importer(session, project, *args, label_map=label_map, **kwargs)
    except (FormatError, TaxonomyError, Invalid) as e:
        fail(f"{e}\nNothing was imported.")
    for line in report.messages[:50]:
        typer.echo(f"  - {line}")
    if len(report.messages) > 50:
        typer.echo(f"  ... and {len(report.messages) - 50} more")
    typer.secho(report.summary(), fg=typer.colors.GREEN)


def _run_import(
    kind: str,
    path: Path,
    images: Path | None,
    map_file: Path | None,
    status: str | None = None,
    duplicates: str | None = None,
) -> None:
    from services.data_io.imports import IMPORTERS

    extra = {} if kind == "folder" else {"duplicates": duplicates}
    _import_with(
        map_file,
        IMPORTERS[kind],
        path,
        images_dir=images,
        status=status,
        bar=f"import {kind}",
        **extra,
    )


def _run_prediction_import(
    kind: str,
    path: Path,
    *,
    model_name: str | None,
    map_file: Path | None,
    status: str | None = None,
    images_json: Path | None = None,
    names: Path | None = None,
) -> None:
    """``import KIND ... --as-predictions``: pending pre-annotations of an external model."""
    from services.data_io.prediction_imports import import_predictions

    if not model_name:
        fail("--as-predictions needs --model-name NAME, the model that made the predictions")
    if status is not None:
        fail("--status applies to labels; predictions leave the photos' statuses as they are")
    _import_with(
        map_file,
        import_predictions,
        kind,
        path,
        model_name=model_name,
        images_json=images_json,
        names=names,
    )


def _labels_or_predictions(
    kind: str,
    path: Path,
    images: Path | None,
    map_file: Path | None,
    status: str | None,
    as_predictions: bool,
    model_name: str | None,
    duplicates: str | None = None,
    **prediction_options: Path | None,
) -> None:
    """An import command's labels, or with --as-predictions the predictions in the file;
    ``prediction_options`` are refused on a labelled import, ``duplicates`` on predictions."""
    if as_predictions:
        if duplicates is not None:
            fail("--duplicates applies to labels; leave it out with --as-predictions")
        _run_prediction_import(
            kind,
            path,
            model_name=model_name,
            map_file=map_file,
            status=status,
            **prediction_options,
        )
        return
    _labels_only(as_predictions, model_name, **prediction_options)
    _run_import(kind, path, images, map_file, status, duplicates)


def _labels_only(as_predictions: bool, model_name: str | None, **given: object) -> None:
    """Refuse prediction-only options on a labelled import."""
    used = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if model_name is not None:
        used.insert(0, "--model-name")
    if used and not as_predictions:
        fail(f"{', '.join(used)} only apply with --as-predictions")


AS_PREDICTIONS_OPT = typer.Option(
    False,
    "--as-predictions",
    help="Import the file as pending pre-annotations of an external model (photos must "
    "already be in the project), not as labels.",
)
MODEL_NAME_OPT = typer.Option(
    None, "--model-name", help="With --as-predictions: the external model's version name."
)
MAP_HELP = 'JSON file mapping source labels to taxonomy names: {"back_bumper": "rear_bumper"}.'
IMAGES_HELP = "Folder the file's image paths are relative to (default: the file's folder)."
STATUS_HELP = (
    "Status for every imported photo: new, in_progress, labelled or reviewed (default: "
    "labelled for a photo that arrives with labels, new for one without). A photo already "
    "here only moves forward, and a rejected one stays rejected."
)
IMPORT_STATUS_OPT = typer.Option(None, "--status", help=STATUS_HELP)
DUPLICATES_OPT = typer.Option(
    None,
    "--duplicates",
    help="skip (default): of photos with the same bytes the first is kept, and the others' "
    "labels are left out (and reported) unless they match its labels; merge: add them to it.",
)
IMAGES_OPT = typer.Option(None, "--images", help=IMAGES_HELP)
MAP_OPT = typer.Option(None, "--map", help=MAP_HELP)


@import_app.command("folder")
def import_folder_cmd(
    folder: Path = typer.Argument(..., help="Folder of images (searched recursively)."),
    map_file: Path | None = MAP_OPT,
    status: str | None = IMPORT_STATUS_OPT,
) -> None:
    """Import every image in a folder, without labels."""
    _run_import("folder", folder, None, map_file, status)


@import_app.command("coco")
def import_coco_cmd(
    file: Path = typer.Argument(..., help="COCO instances JSON (also COCO-Annotator's)."),
    images: Path | None = IMAGES_OPT,
    map_file: Path | None = MAP_OPT,
    status: str | None = IMPORT_STATUS_OPT,
    as_predictions: bool = AS_PREDICTIONS_OPT,
    model_name: str | None = MODEL_NAME_OPT,
    duplicates: str | None = DUPLICATES_OPT,
    images_json: Path | None = typer.Option(
        None,
        "--images-json",
        help="With --as-predictions: the COCO file whose images and categories the results' "
        "image_id and category_id refer to (without it, image_id is the photo's file-name "
        "stem and category_id a label for --map).",
    ),
) -> None:
    """Import a COCO instance-segmentation file (polygons and RLE), or with --as-predictions
    a COCO results file (Detectron2, MMDetection: image_id, category_id, segmentation, score)."""
    _labels_or_predictions(
        "coco",
        file,
        images,
        map_file,
        status,
        as_predictions,
        model_name,
        duplicates,
        images_json=images_json,
    )


@import_app.command("via")
def import_via_cmd(
    file: Path = typer.Argument(..., help="VGG Image Annotator JSON (1.x or 2.x)."),
    images: Path | None = IMAGES_OPT,
    map_file: Path | None = MAP_OPT,
    status: str | None = IMPORT_STATUS_OPT,
    duplicates: str | None = DUPLICATES_OPT,
) -> None:
    """Import a VIA project or region file."""
    _run_import("via", file, images, map_file, status, duplicates)


@import_app.command("yolo")
def import_yolo_cmd(
    data_yaml: Path = typer.Argument(
        ...,
        help="The dataset's data.yaml (Ultralytics segmentation layout); with "
        "--as-predictions, the folder of prediction label files.",
    ),
    map_file: Path | None = MAP_OPT,
    status: str | None = IMPORT_STATUS_OPT,
    as_predictions: bool = AS_PREDICTIONS_OPT,
    model_name: str | None = MODEL_NAME_OPT,
    duplicates: str | None = DUPLICATES_OPT,
    names: Path | None = typer.Option(
        None,
        "--names",
        help="With --as-predictions: a data.yaml naming the class indices (without it, an "
        "index is a label for --map).",
    ),
) -> None:
    """Import an Ultralytics YOLO segmentation dataset, or with --as-predictions a folder of
    prediction labels written with save_txt=True, save_conf=True ("cls x1 y1 ... conf")."""
    _labels_or_predictions(
        "yolo",
        data_yaml,
        None,
        map_file,
        status,
        as_predictions,
        model_name,
        duplicates,
        names=names,
    )


@import_app.command("label-studio")
def import_label_studio_cmd(
    file: Path = typer.Argument(..., help="Label Studio JSON export."),
    images: Path | None = IMAGES_OPT,
    map_file: Path | None = MAP_OPT,
    status: str | None = IMPORT_STATUS_OPT,
    as_predictions: bool = AS_PREDICTIONS_OPT,
    model_name: str | None = MODEL_NAME_OPT,
    duplicates: str | None = DUPLICATES_OPT,
) -> None:
    """Import a Label Studio JSON export (polygons, brush masks, rectangles); with
    --as-predictions, its tasks' predictions (with scores) instead of its annotations."""
    _labels_or_predictions(
        "label-studio", file, images, map_file, status, as_predictions, model_name, duplicates
    )


@import_app.command("cvat")
def import_cvat_cmd(
    file: Path = typer.Argument(..., help="CVAT for images 1.1 XML (annotations.xml)."),
    images: Path | None = IMAGES_OPT,
    map_file: Path | None = MAP_OPT,
    status: str | None = IMPORT_STATUS_OPT,
    duplicates: str | None = DUPLICATES_OPT,
) -> None:
    """Import a CVAT for images 1.1 XML file (polygons, masks, boxes, attributes); without
    --images the photos are looked up beside it and in its images/ folder."""
    _run_import("cvat", file, images, map_file, status, duplicates)


# -- export ---------------------------------------------------------------------

SPLIT_OPT = typer.Option(None, "--split", help="Only this split: train, val or test.")
GROUP_OPT = typer.Option(None, "--group", help="Only this group: damage, fake or part.")
STATUS_OPT = typer.Option(
    None, "--status", help="Only images with these statuses, comma-separated."
)


def _run_export(fn_name: str, out: Path, **kwargs) -> None:
    import services.data_io.exports as exports
    from services.accounts.projects import get_or_create_project
    from services.errors import Invalid

    with store_session(Invalid) as session:
        counts = getattr(exports, fn_name)(session, get_or_create_project(session), out, **kwargs)
    typer.secho(
        f"wrote {out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), fg=typer.colors.GREEN
    )


@export_app.command("coco")
def export_coco_cmd(
    out: Path = typer.Argument(..., help="Output JSON file."),
    split: str | None = SPLIT_OPT,
    group: str | None = GROUP_OPT,
    status: str | None = STATUS_OPT,
) -> None:
    """COCO instance segmentation; categories are the taxonomy (supercategory = group)."""
    _run_export("export_coco", out, split=split, group=group, status=status)


@export_app.command("yolo")
def export_yolo_cmd(
    out_dir: Path = typer.Argument(..., help="Output folder (data.yaml, images/, labels/)."),
    split: str | None = SPLIT_OPT,
    group: str | None = GROUP_OPT,
    status: str | None = STATUS_OPT,
    labels_only: bool = typer.Option(
        False, "--labels-only", help="Write labels and data.yaml, not images."
    ),
) -> None:
    """Ultralytics YOLO segmentation layout."""
    _run_export(
        "export_yolo", out_dir, split=split, group=group, status=status, copy_images=not labels_only
    )


@export_app.command("label-studio")
def export_label_studio_cmd(
    out: Path = typer.Argument(..., help="Output JSON file (the labelling config goes beside it)."),
    include_predictions: bool = typer.Option(
        False, "--include-predictions", help="Add model predictions."
    ),
    split: str | None = SPLIT_OPT,
    group: str | None = GROUP_OPT,
    status: str | None = STATUS_OPT,
) -> None:
    """Label Studio tasks JSON plus the labelling config XML for the taxonomy."""
    _run_export(
        "export_label_studio",
        out,
        include_predictions=include_predictions,
        split=split,
        group=group,
        status=status,
    )


@export_app.command("cvat")
def export_cvat_cmd(
    out: Path = typer.Argument(
        ..., help="Output .xml file, or .zip for the XML plus the photos in images/."
    ),
    split: str | None = SPLIT_OPT,
    group: str | None = GROUP_OPT,
    status: str | None = STATUS_OPT,
) -> None:
    """CVAT for images 1.1 XML; a .zip path writes CVAT's own export layout."""
    _run_export("export_cvat", out, split=split, group=group, status=status)


# -- stats ----------------------------------------------------------------------


@app.command()
def stats(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Counts of images and annotations, per group and per class."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.dashboard.stats import project_stats

    open_project()
    with session_scope() as session:
        result = project_stats(session, get_or_create_project(session))
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    typer.echo(
        f"project {result['project']}: {result['images']} images ({result['labelled']} labelled), "
        f"{result['annotations']} annotations"
    )
    for group, n in result["per_group"].items():
        typer.echo(f"  {group}: {n}")
    for name, n in list(result["per_class"].items())[:20]:
        typer.echo(f"    {name}: {n}")


# -- serve ----------------------------------------------------------------------


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 7860)."),
    worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Start a background job worker too."
    ),
) -> None:
    """Start the web app: the annotation UI at /ui and the REST API at /api."""
    import uvicorn

    from app import create_app, proxy_options

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    application = create_app(start_worker=worker)
    typer.secho(
        f"Panelbeater is starting: open http://{host}:{port}/ui  (API docs: /docs)",
        fg=typer.colors.GREEN,
    )
    uvicorn.run(application, host=host, port=port, log_level="info", **proxy_options(settings))


# Commands that other packages contribute: each module has register(app).
for _module in (
    "cli.users_cmd",
    "cli.models_cmd",
    "cli.al_cmd",
    "cli.weights_cmd",
    "cli.inspections_cmd",
    "cli.ls_backend_cmd",
):
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _e:
        if _e.name != _module:
            raise
        continue
    _mod.register(app)


def main() -> None:
    app(prog_name="panelbeater")


if __name__ == "__main__":
    sys.exit(main())
