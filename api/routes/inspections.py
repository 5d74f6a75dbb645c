"""Vehicles, inspections and their photo slots (``services.claims.inspections``), new-damage flags
(``services.claims.new_damage``) and the PDF damage report (``services.claims.report``).

Leads and admins manage vehicles, inspections and slots (``import``); everyone in the
project reads them (``view``); fraud analysts and leads compute and judge new-damage flags
(``fraud``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ProjectDep, SessionDep, require, service_errors
from api.schemas import IdPath, IdQuery
from db.models import User
from services.accounts.users import Permission
from services.claims import inspections as svc
from services.claims import new_damage
from services.labelling.validation import MAX_ID

router = APIRouter(tags=["inspections"])

Viewer = Annotated[User, Depends(require(Permission.view))]
Manager = Annotated[User, Depends(require(Permission.import_))]
Analyst = Annotated[User, Depends(require(Permission.fraud))]


class VehicleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plate: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    vin: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    make: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    vehicle_model: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    notes: str | None = None


class VehicleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    plate: str | None
    vin: str | None
    make: str | None
    vehicle_model: str | None
    notes: str | None
    created_by: str | None
    created_at: datetime


class InspectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vehicle_id: int = Field(ge=1, le=MAX_ID)
    kind: str = Field(description="pick_up, return or claim")
    name: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    inspected_on: date | None = None
    claim_number: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    notes: str | None = None


class InspectionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str | None = None
    name: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    inspected_on: date | None = None
    claim_number: str | None = Field(default=None, max_length=svc.MAX_TEXT)
    notes: str | None = None


class InspectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    vehicle_id: int
    name: str
    kind: str
    inspected_on: date | None
    claim_number: str | None
    notes: str | None
    created_by: str | None
    created_at: datetime


class SlotOut(BaseModel):
    slot: str
    image_id: int | None
    file_name: str | None
    status: str | None


class InspectionDetail(BaseModel):
    inspection: InspectionOut
    vehicle: VehicleOut
    slots: list[SlotOut]


class SlotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: int = Field(ge=1, le=MAX_ID)


class FlagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    inspection_id: int
    image_id: int
    source: str
    source_id: int
    class_id: int
    state: str
    best_iou: float | None
    compared_inspection_id: int | None
    compared_image_id: int | None
    alignment: dict[str, Any]
    decision: str | None
    note: str | None
    decided_by: str | None
    decided_at: datetime | None


class FlagsComputed(BaseModel):
    inspection_id: int
    compared_inspection_id: int | None
    counts: dict[str, int]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: str = Field(description="confirmed or dismissed")
    note: str | None = None


def _detail(d: dict[str, Any]) -> InspectionDetail:
    return InspectionDetail(
        inspection=InspectionOut.model_validate(d["inspection"]),
        vehicle=VehicleOut.model_validate(d["vehicle"]),
        slots=[SlotOut(**s) for s in d["slots"]],
    )


# -- vehicles -----------------------------------------------------------------------


@router.get("/vehicles")
def list_vehicles(user: Viewer, project: ProjectDep, session: SessionDep) -> list[VehicleOut]:
    return [VehicleOut.model_validate(v) for v in svc.list_vehicles(session, project)]


@router.post("/vehicles", status_code=201)
def create_vehicle(
    body: VehicleIn, user: Manager, project: ProjectDep, session: SessionDep
) -> VehicleOut:
    with service_errors():
        v = svc.create_vehicle(session, project, author=user.username, **body.model_dump())
    return VehicleOut.model_validate(v)


@router.get("/vehicles/{vehicle_id}")
def get_vehicle(
    vehicle_id: IdPath, user: Viewer, project: ProjectDep, session: SessionDep
) -> VehicleOut:
    with service_errors():
        return VehicleOut.model_validate(svc.get_vehicle(session, project, vehicle_id))


@router.patch("/vehicles/{vehicle_id}")
def update_vehicle(
    vehicle_id: IdPath, body: VehicleIn, user: Manager, project: ProjectDep, session: SessionDep
) -> VehicleOut:
    with service_errors():
        v = svc.update_vehicle(session, project, vehicle_id, body.model_dump(exclude_unset=True))
    return VehicleOut.model_validate(v)


@router.delete("/vehicles/{vehicle_id}", status_code=204)
def delete_vehicle(
    vehicle_id: IdPath, user: Manager, project: ProjectDep, session: SessionDep
) -> Response:
    with service_errors():
        svc.delete_vehicle(session, project, vehicle_id)
    return Response(status_code=204)


# -- inspections --------------------------------------------------------------------


@router.get("/inspections")
def list_inspections(
    user: Viewer,
    project: ProjectDep,
    session: SessionDep,
    vehicle_id: IdQuery = None,
) -> list[InspectionOut]:
    rows = svc.list_inspections(session, project, vehicle_id)
    return [InspectionOut.model_validate(i) for i in rows]


@router.post("/inspections", status_code=201)
def create_inspection(
    body: InspectionIn, user: Manager, project: ProjectDep, session: SessionDep
) -> InspectionOut:
    with service_errors():
        i = svc.create_inspection(session, project, author=user.username, **body.model_dump())
    return InspectionOut.model_validate(i)


@router.get("/inspections/{inspection_id}")
def get_inspection(
    inspection_id: IdPath, user: Viewer, project: ProjectDep, session: SessionDep
) -> InspectionDetail:
    """The inspection, its vehicle and its slot grid (every base slot, empty or not)."""
    with service_errors():
        return _detail(svc.inspection_detail(session, project, inspection_id))


@router.patch("/inspections/{inspection_id}")
def update_inspection(
    inspection_id: IdPath,
    body: InspectionPatch,
    user: Manager,
    project: ProjectDep,
    session: SessionDep,
) -> InspectionOut:
    with service_errors():
        i = svc.update_inspection(
            session, project, inspection_id, body.model_dump(exclude_unset=True)
        )
    return InspectionOut.model_validate(i)


@router.delete("/inspections/{inspection_id}", status_code=204)
def delete_inspection(
    inspection_id: IdPath, user: Manager, project: ProjectDep, session: SessionDep
) -> Response:
    """Delete the inspection and its flags; its photos stay in the project, without a slot."""
    with service_errors():
        svc.delete_inspection(session, project, inspection_id)
    return Response(status_code=204)


@router.put("/inspections/{inspection_id}/slots/{slot}")
def put_slot(
    inspection_id: IdPath,
    slot: str,
    body: SlotIn,
    user: Manager,
    project: ProjectDep,
    session: SessionDep,
) -> InspectionDetail:
    """Put a project photo (uploaded with ``POST /api/images/upload``) into a slot."""
    with service_errors():
        svc.assign_photo(session, project, inspection_id, body.image_id, slot)
        return _detail(svc.inspection_detail(session, project, inspection_id))


@router.delete("/inspections/{inspection_id}/photos/{image_id}", status_code=204)
def remove_photo(
    inspection_id: IdPath, image_id: IdPath, user: Manager, project: ProjectDep, session: SessionDep
) -> Response:
    with service_errors():
        svc.remove_photo(session, project, inspection_id, image_id)
    return Response(status_code=204)


@router.get("/inspections/{inspection_id}/images")
def inspection_images(
    inspection_id: IdPath, user: Viewer, project: ProjectDep, session: SessionDep
) -> list[int]:
    """The photo ids of the inspection: the queue filtered to one inspection."""
    with service_errors():
        return svc.inspection_image_ids(session, project, inspection_id)


# -- new damage ---------------------------------------------------------------------


@router.post("/inspections/{inspection_id}/new-damage")
def compute_new_damage(
    inspection_id: IdPath,
    user: Analyst,
    project: ProjectDep,
    session: SessionDep,
    method: Annotated[str, Query(description="auto, sift, orb or patch-ssl")] = "auto",
) -> FlagsComputed:
    """Compare the inspection's damage with the vehicle's pick-up, slot by slot."""
    from services.claims.alignment import check_method

    with service_errors():
        out = new_damage.compute_flags(session, project, inspection_id, method=check_method(method))
    return FlagsComputed(**out)


@router.get("/inspections/{inspection_id}/flags")
def list_flags(
    inspection_id: IdPath,
    user: Viewer,
    project: ProjectDep,
    session: SessionDep,
    state: str | None = None,
) -> list[FlagOut]:
    with service_errors():
        rows = new_damage.list_flags(session, project, inspection_id, state)
    return [FlagOut.model_validate(f) for f in rows]


@router.post("/damage-flags/{flag_id}/decision")
def decide_flag(
    flag_id: IdPath, body: DecisionIn, user: Analyst, project: ProjectDep, session: SessionDep
) -> FlagOut:
    """Confirm or dismiss a flag with a note (fraud analysts and leads)."""
    with service_errors():
        flag = new_damage.decide_flag(
            session, project, flag_id, decision=body.decision, note=body.note, user=user
        )
    return FlagOut.model_validate(flag)


# -- the report ---------------------------------------------------------------------


@router.get("/inspections/{inspection_id}/report.pdf", response_class=Response)
def report_pdf(
    inspection_id: IdPath, user: Viewer, project: ProjectDep, session: SessionDep
) -> Response:
    """The PDF damage report of the inspection."""
    from services.claims.report import build_report

    with service_errors():
        pdf = build_report(session, project, inspection_id)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="inspection-{inspection_id}.pdf"'},
    )
