"""Inspections on the command line: ``import inspections``, ``align``, ``report`` and the
``inspection`` group (list, new-damage, train-aligner). Each calls the service layer."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import fail, store_session

inspection_app = typer.Typer(
    help="Vehicles' inspections: list them, find new damage, train the aligner.",
    no_args_is_help=True,
)


def import_inspections_cmd(
    folder: Path = typer.Argument(
        ...,
        help="DIR/<vehicle>/<inspection>/<slot>[_n].jpg, or the folder a manifest's paths "
        "are relative to.",
    ),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        help="CSV with columns vehicle,inspection,slot,path (and optionally kind,date,"
        "claim_number).",
    ),
    status: str | None = typer.Option(None, "--status", help="Status for every imported photo."),
) -> None:
    """Import photos into vehicles, inspections and slots; bad rows are reported by line."""
    from exports.errors import FormatError
    from services.accounts.projects import get_or_create_project
    from services.claims.inspections import import_inspections
    from services.errors import ServiceError

    with store_session(FormatError, ServiceError) as session:
        project = get_or_create_project(session)
        report = import_inspections(
            session, project, folder, manifest=manifest, author="cli", status=status
        )
    for line in report.messages[:50]:
        typer.echo(f"  - {line}")
    if len(report.messages) > 50:
        typer.echo(f"  ... and {len(report.messages) - 50} more")
    typer.secho(report.summary(), fg=typer.colors.GREEN)


def align_cmd(
    pre: Path = typer.Argument(..., help="The pick-up photo."),
    post: Path = typer.Argument(..., help="The return photo."),
    method: str = typer.Option("auto", "--method", help="auto, sift, orb or patch-ssl."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    encoder: Path | None = typer.Option(
        None,
        "--encoder",
        help="A trained patch-ssl encoder (.pt); default: the registry's promoted patch_ssl "
        "version, else its newest, if any.",
    ),
) -> None:
    """The homography mapping PRE's pixels to POST's pixels, with method, inliers and
    confidence; "homography": null with a reason when no alignment holds."""
    from exports.errors import ImageReadError
    from exports.image_files import load_image_rgb, read_regular_file
    from services.claims.alignment import align, check_method, latest_patch_ssl
    from services.errors import Invalid

    try:
        method = check_method(method)
        arrays = []
        for p in (pre, post):
            read_regular_file(p, limit=_max_bytes(), what="photo")  # refuse pipes, huge files
            arrays.append(load_image_rgb(p))
    except (Invalid, ImageReadError, OSError) as e:
        fail(str(e))
    trained = None
    if encoder is not None:
        from models.alignment.patch_ssl import load

        trained = load(encoder)
    elif method in ("patch-ssl", "auto"):
        from services.errors import ServiceError

        with store_session(ServiceError) as session:
            trained = latest_patch_ssl(session)
    result = align(arrays[0], arrays[1], method, encoder=trained)
    out = result.as_dict()
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    if result.ok:
        typer.echo(
            f"{result.method}: {result.inliers} inliers of {result.matches} matches, confidence "
            f"{result.confidence:.2f}, reprojection error {result.reprojection_error:.2f} px"
        )
        for row in out["homography"]:
            typer.echo("  " + "  ".join(f"{v: .6g}" for v in row))
    else:
        typer.echo(f"no alignment: {result.reason}")


def _max_bytes() -> int:
    from core.config import get_settings

    return get_settings().max_image_bytes


def report_cmd(
    inspection: int = typer.Argument(..., help="The inspection's id (`inspection list`)."),
    out: Path | None = typer.Option(None, "--out", help="PDF file (default inspection-<id>.pdf)."),
) -> None:
    """Write the inspection's PDF damage report."""
    from services.accounts.projects import get_or_create_project
    from services.claims.report import build_report
    from services.errors import ServiceError

    target = out or Path(f"inspection-{inspection}.pdf")
    with store_session(ServiceError) as session:
        project = get_or_create_project(session)
        pdf = build_report(session, project, inspection, target)
    typer.secho(f"wrote {target} ({len(pdf) / 1e3:.0f} kB)", fg=typer.colors.GREEN)


@inspection_app.command("list")
def list_cmd() -> None:
    """Every inspection: id, vehicle, kind, date, claim number, photos."""
    from services.accounts.projects import get_or_create_project
    from services.claims.inspections import inspection_photos, list_inspections, list_vehicles
    from services.errors import ServiceError

    with store_session(ServiceError) as session:
        project = get_or_create_project(session)
        vehicles = {v.id: v for v in list_vehicles(session, project)}
        for i in list_inspections(session, project):
            v = vehicles[i.vehicle_id]
            n = len(inspection_photos(session, i.id))
            typer.echo(
                f"{i.id:>5}  {v.plate or v.vin}  {i.name}  {i.kind}  "
                f"{i.inspected_on or '-'}  claim {i.claim_number or '-'}  {n} photo(s)"
            )


@inspection_app.command("new-damage")
def new_damage_cmd(
    inspection: int = typer.Argument(..., help="A return or claim inspection's id."),
    method: str = typer.Option("auto", "--method", help="auto, sift, orb or patch-ssl."),
) -> None:
    """Compare the inspection's damage with the vehicle's pick-up and store the flags."""
    from services.accounts.projects import get_or_create_project
    from services.claims.alignment import check_method, latest_patch_ssl
    from services.claims.new_damage import compute_flags
    from services.errors import ServiceError

    with store_session(ServiceError) as session:
        project = get_or_create_project(session)
        method = check_method(method)
        encoder = latest_patch_ssl(session) if method in ("auto", "patch-ssl") else None
        out = compute_flags(session, project, inspection, method=method, encoder=encoder)
    typer.echo(json.dumps(out))


@inspection_app.command("train-aligner")
def train_aligner_cmd(
    preset: str = typer.Option("cpu", "--preset", help="cpu (small encoder) or gpu (ResNet-18)."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (default: preset's)."),
    max_photos: int = typer.Option(200, "--max-photos", help="Train on at most this many photos."),
) -> None:
    """Train the patch-ssl aligner on the project's photos and register it as the next
    patch_ssl model version (the aligner uses the promoted one, else the newest)."""
    from services.accounts.projects import get_or_create_project
    from services.claims.alignment import train_patch_ssl
    from services.errors import ServiceError

    with store_session(ServiceError) as session:
        project = get_or_create_project(session)
        out = train_patch_ssl(session, project, preset=preset, steps=steps, max_photos=max_photos)
    typer.echo(json.dumps(out))


def register(app: typer.Typer) -> None:
    app.command("align")(align_cmd)
    app.command("report")(report_cmd)
    app.add_typer(inspection_app, name="inspection")
    # `import inspections` joins the existing `import` group
    for group in app.registered_groups:
        if group.name == "import" and group.typer_instance is not None:
            group.typer_instance.command("inspections")(import_inspections_cmd)
            break
