"""Vehicles, their inspections (pick-up, return, claim) and the photo slots of each.

A photo belongs to at most one inspection slot (``InspectionPhoto`` is keyed by the image);
photos without an inspection keep working as before. Everything is scoped to one project.

``import_inspections`` reads ``DIR/<vehicle>/<inspection>/<slot>[_n].jpg`` or a CSV manifest
(columns ``vehicle,inspection,slot,path`` and optionally ``kind,date,claim_number``). It
reuses the image import of ``services.data_io.imports`` (path safety, size limits, deduplication
by content hash); a bad row or an unknown slot is reported by line, and the rest imports.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from core.config import env_name, get_settings
from core.records import ImageRecord, ParseReport
from db.models import (
    AnnotationSource,
    DamageFlag,
    Image,
    Inspection,
    InspectionKind,
    InspectionPhoto,
    Project,
    Vehicle,
)
from exports.errors import FormatError, ImageReadError
from exports.file_names import safe_base_name
from exports.image_files import is_image_file, list_image_files, read_regular_file
from services.data_io.imports import import_status, read_all, resolve_path, store_photo
from services.errors import Invalid, NotFound, check_comment_length
from services.events import photos_placed

#: The walk-around's slots; ``closeup`` and any slot may carry ``_<n>`` (``closeup_3``).
BASE_SLOTS: tuple[str, ...] = (
    "front",
    "rear",
    "left",
    "right",
    "front_left",
    "front_right",
    "rear_left",
    "rear_right",
    "roof",
    "interior",
    "odometer",
    "closeup",
)
KINDS: tuple[str, ...] = tuple(k.value for k in InspectionKind)
#: A VIN: 17 characters, letters and digits without I, O and Q (ISO 3779).
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_SLOT_N = re.compile(r"^(?P<base>[a-z_]+?)_(?P<n>[1-9][0-9]{0,2})$")
#: Longest short text (plate, VIN, make, model, names, claim number), in characters.
MAX_TEXT = 200


def parse_slot(name: str) -> str:
    """``name`` as a slot (``front``, ``rear_left``, ``closeup_2``), lower-cased; raises
    Invalid naming the valid slots."""
    slot = name.strip().lower()
    if slot in BASE_SLOTS:
        return slot
    m = _SLOT_N.match(slot)
    if m and m["base"] in BASE_SLOTS:
        return slot
    raise Invalid(
        f"slot {name!r} is not a known slot; use one of {', '.join(BASE_SLOTS)}, "
        "optionally followed by _<n> (closeup_2)"
    )


def slot_base(slot: str) -> str:
    m = _SLOT_N.match(slot)
    return m["base"] if m and slot not in BASE_SLOTS else slot


def parse_kind(kind: str) -> str:
    k = (kind or "").strip().lower().replace("-", "_")
    if k == "pickup":
        k = "pick_up"
    if k not in KINDS:
        raise Invalid(f"kind {kind!r} must be one of {', '.join(KINDS)}")
    return k


def parse_date(value: str | date | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as e:
        raise Invalid(f"date {value!r} must be YYYY-MM-DD") from e


def _text(value: str | None, field_name: str) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    if len(value) > MAX_TEXT:
        raise Invalid(f"{field_name} is {len(value)} characters; at most {MAX_TEXT} are kept")
    return value or None


def _notes(value: str | None) -> str | None:
    """Free-text notes, held to the comment limit rather than :data:`MAX_TEXT`."""
    value = None if value is None else str(value).strip()
    check_comment_length(value, "notes")
    return value or None


def looks_like_vin(key: str) -> bool:
    return bool(_VIN.match(key.strip().upper()))


# -- vehicles ---------------------------------------------------------------------


def get_vehicle(session: Session, project: Project, vehicle_id: int) -> Vehicle:
    v = session.get(Vehicle, vehicle_id)
    if v is None or v.project_id != project.id:
        raise NotFound(f"vehicle {vehicle_id} does not exist in project {project.name}")
    return v


def list_vehicles(session: Session, project: Project) -> list[Vehicle]:
    return list(
        session.exec(select(Vehicle).where(Vehicle.project_id == project.id).order_by(Vehicle.id))
    )


def find_vehicle(session: Session, project: Project, key: str) -> Vehicle | None:
    """The vehicle whose plate or VIN is ``key`` (case-insensitive), or None."""
    k = key.strip().upper()
    return session.exec(
        select(Vehicle).where(
            Vehicle.project_id == project.id,
            (func.upper(Vehicle.plate) == k) | (func.upper(Vehicle.vin) == k),
        )
    ).first()


def _check_unique(session: Session, project: Project, v: Vehicle) -> None:
    for attr in ("plate", "vin"):
        value = getattr(v, attr)
        if value is None:
            continue
        # An edited vehicle already carries the new value: flushing it before the query
        # would meet the unique constraint first, and answer an IntegrityError instead
        # of this sentence.
        with session.no_autoflush:
            other = session.exec(
                select(Vehicle).where(
                    Vehicle.project_id == project.id,
                    func.upper(getattr(Vehicle, attr)) == value.upper(),
                    Vehicle.id != (v.id or -1),
                )
            ).first()
        if other is not None:
            raise Invalid(f"{attr} {value!r} already belongs to vehicle {other.id}")


def create_vehicle(
    session: Session,
    project: Project,
    *,
    plate: str | None = None,
    vin: str | None = None,
    make: str | None = None,
    vehicle_model: str | None = None,
    notes: str | None = None,
    author: str | None = None,
) -> Vehicle:
    """A vehicle known by its plate or VIN (at least one)."""
    v = Vehicle(project_id=project.id, created_by=author)
    _apply_vehicle(v, plate=plate, vin=vin, make=make, vehicle_model=vehicle_model, notes=notes)
    _check_unique(session, project, v)
    session.add(v)
    session.flush()
    return v


def _apply_vehicle(v: Vehicle, **values: str | None) -> None:
    for key, value in values.items():
        setattr(v, key, _notes(value) if key == "notes" else _text(value, key))
    if v.vin is not None:
        v.vin = v.vin.upper()
    if not v.plate and not v.vin:
        raise Invalid("a vehicle needs a plate or a VIN (or both)")


def update_vehicle(
    session: Session, project: Project, vehicle_id: int, changes: dict[str, Any]
) -> Vehicle:
    """Change the given fields of a vehicle (``plate``, ``vin``, ``make``, ``vehicle_model``,
    ``notes``); a field not given is left as it is."""
    v = get_vehicle(session, project, vehicle_id)
    allowed = {"plate", "vin", "make", "vehicle_model", "notes"}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(f"unknown vehicle field(s) {', '.join(sorted(unknown))}")
    _apply_vehicle(v, **changes)
    _check_unique(session, project, v)
    session.add(v)
    session.flush()
    return v


def delete_vehicle(session: Session, project: Project, vehicle_id: int) -> None:
    v = get_vehicle(session, project, vehicle_id)
    if session.exec(select(Inspection.id).where(Inspection.vehicle_id == v.id)).first():
        raise Invalid(f"vehicle {vehicle_id} has inspections; delete them first")
    session.delete(v)
    session.flush()


# -- inspections ------------------------------------------------------------------


def get_inspection(session: Session, project: Project, inspection_id: int) -> Inspection:
    i = session.get(Inspection, inspection_id)
    if i is None or i.project_id != project.id:
        raise NotFound(f"inspection {inspection_id} does not exist in project {project.name}")
    return i


def list_inspections(
    session: Session, project: Project, vehicle_id: int | None = None
) -> list[Inspection]:
    stmt = select(Inspection).where(Inspection.project_id == project.id)
    if vehicle_id is not None:
        stmt = stmt.where(Inspection.vehicle_id == vehicle_id)
    return list(session.exec(stmt.order_by(Inspection.id)))


def create_inspection(
    session: Session,
    project: Project,
    *,
    vehicle_id: int,
    kind: str,
    name: str | None = None,
    inspected_on: str | date | None = None,
    claim_number: str | None = None,
    notes: str | None = None,
    author: str | None = None,
) -> Inspection:
    v = get_vehicle(session, project, vehicle_id)
    kind = parse_kind(kind)
    when = parse_date(inspected_on)
    name = _text(name, "name") or f"{kind}-{when.isoformat() if when else 'undated'}"
    _check_name_free(session, v.id, name)
    i = Inspection(
        project_id=project.id,
        vehicle_id=v.id,
        name=name,
        kind=kind,
        inspected_on=when,
        claim_number=_text(claim_number, "claim_number"),
        notes=_notes(notes),
        created_by=author,
    )
    session.add(i)
    session.flush()
    return i


def _check_name_free(
    session: Session, vehicle_id: int, name: str, inspection_id: int | None = None
) -> None:
    """Raise Invalid when another inspection of the vehicle than ``inspection_id`` is named
    ``name`` (the unique constraint would otherwise answer, without a sentence)."""
    with session.no_autoflush:  # the edited inspection is not flushed before the check
        taken = session.exec(
            select(Inspection.id).where(
                Inspection.vehicle_id == vehicle_id,
                Inspection.name == name,
                Inspection.id != (inspection_id or -1),
            )
        ).first()
    if taken:
        raise Invalid(f"vehicle {vehicle_id} already has an inspection named {name!r}")


def update_inspection(
    session: Session, project: Project, inspection_id: int, changes: dict[str, Any]
) -> Inspection:
    i = get_inspection(session, project, inspection_id)
    allowed = {"kind", "inspected_on", "claim_number", "notes", "name"}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(f"unknown inspection field(s) {', '.join(sorted(unknown))}")
    if "kind" in changes:
        i.kind = parse_kind(changes["kind"])
    if "inspected_on" in changes:
        i.inspected_on = parse_date(changes["inspected_on"])
    if "claim_number" in changes:
        i.claim_number = _text(changes["claim_number"], "claim_number")
    if "notes" in changes:
        i.notes = _notes(changes["notes"])
    if changes.get("name"):
        name = _text(changes["name"], "name") or i.name
        _check_name_free(session, i.vehicle_id, name, i.id)
        i.name = name
    session.add(i)
    session.flush()
    return i


def delete_inspection(session: Session, project: Project, inspection_id: int) -> None:
    """Delete an inspection; its photos stay in the project, without a slot."""
    i = get_inspection(session, project, inspection_id)
    for row in session.exec(select(DamageFlag).where(DamageFlag.inspection_id == i.id)):
        session.delete(row)
    for row in session.exec(select(DamageFlag).where(DamageFlag.compared_inspection_id == i.id)):
        session.delete(row)
    for row in session.exec(select(InspectionPhoto).where(InspectionPhoto.inspection_id == i.id)):
        session.delete(row)
    session.flush()
    session.delete(i)
    session.flush()


def assign_photo(
    session: Session, project: Project, inspection_id: int, image_id: int, slot: str
) -> InspectionPhoto:
    """Put a project photo into an inspection's slot. A photo already in a slot, or a slot
    already holding another photo, is refused with the slot that holds it. Once the
    transaction commits, the promoted pre-annotating stages run over the photo in the
    background (``jobs.slot_predictions``)."""
    i = get_inspection(session, project, inspection_id)
    image = session.get(Image, image_id)
    if image is None or image.project_id != project.id:
        raise NotFound(f"image {image_id} does not exist in project {project.name}")
    slot = parse_slot(slot)
    held = session.get(InspectionPhoto, image_id)
    if held is not None:
        if held.inspection_id == i.id and held.slot == slot:
            return held
        raise Invalid(
            f"image {image_id} is already in slot {held.slot} of inspection "
            f"{held.inspection_id}; a photo belongs to at most one slot (remove it there first)"
        )
    taken = session.exec(
        select(InspectionPhoto).where(
            InspectionPhoto.inspection_id == i.id, InspectionPhoto.slot == slot
        )
    ).first()
    if taken is not None:
        raise Invalid(f"slot {slot} of inspection {i.id} already holds image {taken.image_id}")
    row = InspectionPhoto(image_id=image_id, inspection_id=i.id, slot=slot)
    session.add(row)
    session.flush()
    photos_placed(session, project.id, [image_id])  # pre-annotated once this commits
    return row


def remove_photo(session: Session, project: Project, inspection_id: int, image_id: int) -> None:
    get_inspection(session, project, inspection_id)
    row = session.get(InspectionPhoto, image_id)
    if row is None or row.inspection_id != inspection_id:
        raise NotFound(f"image {image_id} is not in inspection {inspection_id}")
    session.delete(row)
    session.flush()


def inspection_photos(session: Session, inspection_id: int) -> list[tuple[InspectionPhoto, Image]]:
    """The inspection's photos with their slots, in walk-around order."""
    rows = session.exec(
        select(InspectionPhoto, Image)
        .join(Image, Image.id == InspectionPhoto.image_id)
        .where(InspectionPhoto.inspection_id == inspection_id)
    ).all()
    order = {s: k for k, s in enumerate(BASE_SLOTS)}
    return sorted(rows, key=lambda r: (order.get(slot_base(r[0].slot), 99), r[0].slot))


def inspection_image_ids(session: Session, project: Project, inspection_id: int) -> list[int]:
    """For the queue filter: the photo ids of one inspection of the project."""
    get_inspection(session, project, inspection_id)
    return list(
        session.exec(
            select(InspectionPhoto.image_id).where(InspectionPhoto.inspection_id == inspection_id)
        )
    )


def slot_of(session: Session, image_id: int) -> InspectionPhoto | None:
    return session.get(InspectionPhoto, image_id)


def inspection_detail(session: Session, project: Project, inspection_id: int) -> dict[str, Any]:
    """The inspection, its vehicle and its slot grid: every base slot (empty or not) and
    each extra slot that holds a photo, with the photo's id, file and status."""
    i = get_inspection(session, project, inspection_id)
    v = session.get(Vehicle, i.vehicle_id)
    held = {p.slot: im for p, im in inspection_photos(session, i.id)}
    slots = []
    for slot in [*BASE_SLOTS, *sorted(s for s in held if s not in BASE_SLOTS)]:
        im = held.get(slot)
        slots.append(
            {
                "slot": slot,
                "image_id": im.id if im else None,
                "file_name": im.file_name if im else None,
                "status": im.status.value if im else None,
            }
        )
    return {"inspection": i, "vehicle": v, "slots": slots}


def pick_up_for(session: Session, inspection: Inspection) -> Inspection | None:
    """The pick-up inspection a return (or claim) is compared against: the vehicle's latest
    pick-up on or before it (by date, then by id)."""
    rows = session.exec(
        select(Inspection).where(
            Inspection.vehicle_id == inspection.vehicle_id,
            Inspection.kind == InspectionKind.pick_up.value,
            Inspection.id != inspection.id,
        )
    ).all()
    if inspection.inspected_on is not None:
        rows = [
            r for r in rows if r.inspected_on is None or r.inspected_on <= inspection.inspected_on
        ]
    rows.sort(key=lambda r: (r.inspected_on or date.min, r.id))
    return rows[-1] if rows else None


# -- import -----------------------------------------------------------------------


@dataclass
class InspectionImportReport:
    source: str
    rows: int = 0
    photos_placed: int = 0
    photos_already_placed: int = 0
    vehicles_added: int = 0
    inspections_added: int = 0
    rows_failed: int = 0
    images: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def summary(self) -> str:
        return (
            f"{self.source}: {self.rows} row(s); {self.photos_placed} photo(s) placed in slots "
            f"({self.photos_already_placed} already there), {self.vehicles_added} vehicle(s) and "
            f"{self.inspections_added} inspection(s) added, {self.rows_failed} row(s) failed"
        )


@dataclass
class _Row:
    where: str
    vehicle: str
    inspection: str
    slot: str
    path: str
    kind: str | None = None
    date: str | None = None
    claim_number: str | None = None


def _rows_from_folder(root: Path, out: InspectionImportReport) -> list[_Row]:
    rows = []
    for p in list_image_files(root):
        rel = p.relative_to(root)
        where = str(rel)
        if len(rel.parts) != 3:
            out.rows_failed += 1
            out.messages.append(f"{where}: expected <vehicle>/<inspection>/<slot>.jpg; left out")
            continue
        rows.append(_Row(where, rel.parts[0], rel.parts[1], p.stem, str(rel)))
    return rows


_MANIFEST_COLUMNS = ("vehicle", "inspection", "slot", "path")


def _rows_from_manifest(manifest: Path, out: InspectionImportReport) -> list[_Row]:
    try:
        raw = read_regular_file(
            manifest,
            limit=get_settings().max_label_file_bytes,
            what="manifest",
            setting="max_label_file_bytes",
        )
        text = raw.decode("utf-8-sig")
    except (ImageReadError, UnicodeDecodeError) as e:
        raise FormatError(f"{manifest}: {e}") from e
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in _MANIFEST_COLUMNS if c not in header]
    if missing:
        raise FormatError(
            f"{manifest}: the header lacks column(s) {', '.join(missing)}; a manifest has "
            "vehicle,inspection,slot,path (and optionally kind,date,claim_number)"
        )
    reader.fieldnames = header
    rows = []
    limit = get_settings().max_manifest_rows
    for k, rec in enumerate(reader):
        line = reader.line_num
        if k >= limit:
            raise FormatError(
                f"{manifest}: more than {limit:,} rows (setting {env_name('max_manifest_rows')})"
            )
        where = f"{manifest.name} line {line}"
        vals = {c: (rec.get(c) or "").strip() for c in header}
        empty = [c for c in _MANIFEST_COLUMNS if not vals.get(c)]
        if empty:
            out.rows_failed += 1
            out.messages.append(f"{where}: empty {', '.join(empty)}; row left out")
            continue
        rows.append(
            _Row(
                where,
                vals["vehicle"],
                vals["inspection"],
                vals["slot"],
                vals["path"],
                vals.get("kind") or None,
                vals.get("date") or None,
                vals.get("claim_number") or None,
            )
        )
    return rows


def _guess_kind(name: str) -> str:
    low = name.lower().replace("-", "_")
    if "pick" in low:
        return "pick_up"
    if "return" in low:
        return "return"
    return "claim"


def import_inspections(
    session: Session,
    project: Project,
    root: str | Path,
    *,
    manifest: str | Path | None = None,
    author: str | None = None,
    status: str | None = None,
) -> InspectionImportReport:
    """Import photos into vehicles, inspections and slots. Without ``manifest``, ``root`` is
    ``<vehicle>/<inspection>/<slot>[_n].jpg``; with it, manifest paths are relative to
    ``root``. Vehicles (by plate or VIN) and inspections (by name, the kind guessed from it
    when the manifest gives none) are created when missing. A bad row, an unknown slot, an
    unreadable photo or a slot conflict is reported by line or file, and the rest imports."""
    root = Path(root)
    if not root.is_dir():
        raise FormatError(f"{root}: not a folder")
    asked = import_status(status)
    out = InspectionImportReport(source=str(manifest or root))
    rows = _rows_from_manifest(Path(manifest), out) if manifest else _rows_from_folder(root, out)
    out.rows = len(rows) + out.rows_failed

    good: list[_Row] = []
    for r in rows:
        try:
            r.slot = parse_slot(r.slot)
            if r.kind:
                r.kind = parse_kind(r.kind)
            parse_date(r.date)
            if not is_image_file(r.path):
                raise Invalid(f"{r.path!r} is not an image file name")
        except Invalid as e:
            out.rows_failed += 1
            out.messages.append(f"{r.where}: {e}; row left out")
            continue
        good.append(r)

    paths = [resolve_path(root, ImageRecord(file_name=r.path, width=0, height=0)) for r in good]
    infos = read_all(paths)
    readable: list[tuple[_Row, str]] = []
    for r, info in zip(good, infos, strict=True):
        if isinstance(info, ImageReadError):
            out.rows_failed += 1
            out.messages.append(f"{r.where}: {info}; row left out")
        else:
            readable.append((r, info.sha256))
    records = [ImageRecord(file_name=r.path, width=0, height=0) for r, _ in readable]
    image_report = store_photo(
        session,
        project,
        records,
        ParseReport(),
        root,
        out.source,
        AnnotationSource.imported,
        None,
        status=asked,
    )
    out.images = image_report.as_dict()
    image_ids = dict(
        session.exec(select(Image.sha256, Image.id).where(Image.project_id == project.id)).all()
    )
    for r, sha in readable:
        try:
            inspection = _inspection_for(session, project, r, author, out)
            image_id = image_ids[sha]
            held = session.get(InspectionPhoto, image_id)
            if held is not None and held.inspection_id == inspection.id and held.slot == r.slot:
                out.photos_already_placed += 1
                continue
            assign_photo(session, project, inspection.id, image_id, r.slot)
            out.photos_placed += 1
        except Invalid as e:
            out.rows_failed += 1
            out.messages.append(f"{r.where}: {e}; row left out")
    session.flush()
    return out


def _inspection_for(
    session: Session, project: Project, r: _Row, author: str | None, out: InspectionImportReport
) -> Inspection:
    v = find_vehicle(session, project, r.vehicle)
    if v is None:
        key = r.vehicle.strip()
        v = create_vehicle(
            session,
            project,
            vin=key if looks_like_vin(key) else None,
            plate=None if looks_like_vin(key) else key,
            author=author,
        )
        out.vehicles_added += 1
    i = session.exec(
        select(Inspection).where(Inspection.vehicle_id == v.id, Inspection.name == r.inspection)
    ).first()
    if i is None:
        i = create_inspection(
            session,
            project,
            vehicle_id=v.id,
            kind=r.kind or _guess_kind(r.inspection),
            name=r.inspection,
            inspected_on=r.date,
            claim_number=r.claim_number,
            author=author,
        )
        out.inspections_added += 1
    return i


# -- upload into a slot -----------------------------------------------------------


@dataclass
class SlotUploadReport:
    """What :func:`upload_into_slot` did: each placed photo as ``(file, slot, image_id)``,
    and one sentence per file that was refused (bad file, slot taken, photo elsewhere)."""

    inspection_id: int
    placed: list[tuple[str, str, int]] = field(default_factory=list)
    already_there: list[tuple[str, str, int]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    images: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        done = ", ".join(f"{name} -> {slot}" for name, slot, _ in self.placed) or "nothing"
        again = f"; {len(self.already_there)} already in their slot" if self.already_there else ""
        failed = f"; {len(self.messages)} refused" if self.messages else ""
        return f"inspection {self.inspection_id}: placed {done}{again}{failed}"


def _free_slots(first: str, taken: set[str]) -> Any:
    """``first``, then ``<base>_2``, ``<base>_3``, ... skipping the slots already held, the
    way ``import inspections`` numbers several close-ups."""
    yield first
    base = slot_base(first)
    n = 2
    while True:
        slot = f"{base}_{n}"
        if slot not in taken and slot != first:
            yield slot
        n += 1


def upload_into_slot(
    session: Session,
    project: Project,
    inspection_id: int,
    slot: str,
    files: list[tuple[str, bytes]],
    *,
    status: str | None = None,
) -> SlotUploadReport:
    """Upload photos into one inspection's ``slot``: the first file goes into ``slot``, each
    further one into the next free ``<slot>_<n>`` (``closeup``, ``closeup_2``, ...).

    The photos are stored by ``services.data_io.imports.import_uploads`` (what POST
    /api/images/upload does: limits, full decode, deduplication by content hash) and then
    placed with :func:`assign_photo`. A bad file, a taken slot or a photo that already holds
    another slot is reported by file name, and the other files go on. An unknown inspection
    or slot raises (nothing is stored)."""
    import hashlib

    from services.data_io.imports import import_uploads

    i = get_inspection(session, project, inspection_id)
    first = parse_slot(slot)
    if not files:
        raise Invalid("no files to upload; choose one or more photos")
    out = SlotUploadReport(inspection_id=i.id)
    report = import_uploads(session, project, files, status=status)
    out.images = report.as_dict()
    out.messages += report.messages
    hashes = [hashlib.sha256(data).hexdigest() for _, data in files]
    stored = dict(
        session.exec(
            select(Image.sha256, Image.id).where(
                Image.project_id == project.id, Image.sha256.in_(set(hashes))
            )
        ).all()
    )
    held = {p.slot for p, _ in inspection_photos(session, i.id)}
    free = _free_slots(first, held)
    target = next(free)
    for (name, _), sha in zip(files, hashes, strict=True):
        shown = safe_base_name(name)  # as import_uploads names it
        image_id = stored.get(sha)
        if image_id is None or not is_image_file(shown):
            continue  # import_uploads already said why, by name
        row = session.get(InspectionPhoto, image_id)
        if row is not None and row.inspection_id == i.id:
            out.already_there.append((shown, row.slot, image_id))
            continue
        try:
            assign_photo(session, project, i.id, image_id, target)
        except Invalid as e:
            out.messages.append(f"{shown}: {e}; not placed")
            if target == first and first in held:
                target = next(free)  # the chosen slot was taken: the rest numbers on
            continue
        out.placed.append((shown, target, image_id))
        held.add(target)
        target = next(free)
    session.flush()
    return out
