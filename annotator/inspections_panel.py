"""The Inspections tab: pick an inspection; see its slot grid (thumbnails and status), the
per-part damage summary, the new-damage flags; compare a slot with the pick-up (side by side
and an overlay with an opacity slider, new damage outlined orange); confirm or dismiss a
flag (click its row) with a note; download the PDF report.

Thin: handlers call ``services.claims.inspections``, ``services.claims.new_damage`` and ``services.claims.report``.
The caller passes its ``require(token, permission) -> User``, so this module needs nothing
of the app.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from core.config import env_name, get_settings
from db.models import User
from db.session import session_scope
from services.accounts.projects import project_taxonomy, served_project
from services.accounts.users import Permission
from services.claims import inspections as svc
from services.claims import new_damage
from services.errors import ServiceError

Require = Callable[[str, Permission], User]
THUMB = 220
COMPARE_SIDE = 900


def _choices(require: Require, token: str) -> list[tuple[str, int]]:
    user = require(token, Permission.view)
    with session_scope() as session:
        project = served_project(session, user)
        vehicles = {v.id: v for v in svc.list_vehicles(session, project)}
        out = []
        for i in svc.list_inspections(session, project):
            v = vehicles[i.vehicle_id]
            when = i.inspected_on.isoformat() if i.inspected_on else "undated"
            out.append((f"{v.plate or v.vin}: {i.name} ({i.kind}, {when})", i.id))
        return out


def _thumb(image, side: int) -> np.ndarray:
    from services.labelling.images import load_image_array

    return load_image_array(image, max_side=side)


def _show(require: Require, token: str, inspection_id: int | None) -> tuple:
    if not inspection_id:
        return "Pick an inspection.", [], [], [], gr.update(choices=[])
    user = require(token, Permission.view)
    from services.claims.report import report_data

    with session_scope() as session:
        project = served_project(session, user)
        d = svc.inspection_detail(session, project, int(inspection_id))
        i, v = d["inspection"], d["vehicle"]
        data = report_data(session, project, i.id)
        held = {p.slot: im for p, im in svc.inspection_photos(session, i.id)}
        gallery = [
            (_thumb(held[s["slot"]], THUMB), f"{s['slot']}: {s['status']}")
            for s in d["slots"]
            if s["image_id"]
        ]
        empty = [s["slot"] for s in d["slots"] if not s["image_id"]]
        ident = " / ".join(x for x in (v.plate, v.vin) if x)
        car = " ".join(x for x in (v.make, v.vehicle_model) if x)
        info = (
            f"**{ident}** {car}  \n"
            f"Inspection **{i.name}**: {i.kind}, {i.inspected_on or 'undated'}, claim "
            f"{i.claim_number or '-'}; {len(held)} photo(s); empty slots: "
            f"{', '.join(empty) or 'none'}"
        )
        parts = [list(r) for r in data.parts] + [
            [f[0], "", f"{f[1]} (fake): {f[2]}", "", "", f[3]] for f in data.fakes
        ]
        names = {c.id: c.name for c in project_taxonomy(project)}
        flags = [
            [
                f.id,
                _slot(held, f.image_id),
                names.get(f.class_id, f.class_id),
                f.state,
                f.best_iou,
                f.decision or "open",
                f.note or "",
            ]
            for f in new_damage.list_flags(session, project, i.id)
        ]
        slots = [s["slot"] for s in d["slots"] if s["image_id"]]
    # gr.Markdown renders markdown: user text is escaped by showing it as code-free text
    return _md_escape(info), gallery, parts, flags, gr.update(choices=slots, value=None)


def _slot(held: dict, image_id: int) -> str:
    return next((s for s, im in held.items() if im.id == image_id), "")


def _md_escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _compare(
    require: Require, token: str, inspection_id: int | None, slot: str | None, opacity: float
) -> tuple:
    """Side by side (pick-up, return) and the pick-up warped onto the return photo, blended
    at ``opacity``, with damage outlined: new orange, pre-existing red, unverified grey."""
    if not inspection_id or not slot:
        return None, None, "Pick an inspection and a slot."
    user = require(token, Permission.view)
    with session_scope() as session:
        project = served_project(session, user)
        ins = svc.get_inspection(session, project, int(inspection_id))
        held = {p.slot: im for p, im in svc.inspection_photos(session, ins.id)}
        post = held.get(slot)
        pick = svc.pick_up_for(session, ins)
        pre = None
        if pick is not None:
            pre_held = {p.slot: im for p, im in svc.inspection_photos(session, pick.id)}
            pre = pre_held.get(slot) or pre_held.get(svc.slot_base(slot))
        if post is None:
            return None, None, f"Slot {slot} holds no photo."
        b = _thumb(post, COMPARE_SIDE)
        s = b.shape[1] / post.width
        flags = [
            f for f in new_damage.flags_of_image(session, post.id) if f.inspection_id == ins.id
        ]
        if pre is None:
            return None, _outline(b, flags, s), "No pick-up photo in this slot to compare with."
        a = _thumb(pre, COMPARE_SIDE)
        h_full = next(
            (f.alignment.get("homography") for f in flags if f.alignment.get("homography")), None
        )
        if h_full is None:
            found = new_damage.align_photos(pre, post)
            h_full = found.homography if found.ok else None
            note = f"aligned now by {found.method}" if found.ok else f"not aligned: {found.reason}"
        else:
            note = "alignment of the last new-damage run"
    if h_full is None:
        return a, _outline(b, flags, s), note
    sa = a.shape[1] / pre.width
    hs = np.diag([s, s, 1.0]) @ np.asarray(h_full) @ np.linalg.inv(np.diag([sa, sa, 1.0]))
    warped = cv2.warpPerspective(a, hs, (b.shape[1], b.shape[0]))
    blend = cv2.addWeighted(warped, float(opacity), b, 1.0 - float(opacity), 0)
    return a, _outline(blend, flags, s), note


def _outline(img: np.ndarray, flags: list, s: float) -> np.ndarray:
    colours = {
        new_damage.NEW: (255, 140, 0),
        new_damage.PRE_EXISTING: (220, 30, 30),
        new_damage.UNVERIFIED: (150, 150, 150),
    }
    out = img.copy()
    for f in flags:
        for poly in f.geometry:
            pts = np.int32(np.asarray(poly["exterior"]) * s)
            cv2.polylines(
                out,
                [pts],
                True,
                colours.get(f.state, (255, 255, 0)),
                4 if f.state == new_damage.NEW else 2,
            )
    return out


def _find_new(require: Require, token: str, inspection_id: int | None) -> str:
    if not inspection_id:
        return "Pick an inspection."
    user = require(token, Permission.fraud)
    try:
        with session_scope() as session:
            out = new_damage.compute_flags(
                session, served_project(session, user), int(inspection_id)
            )
    except ServiceError as e:
        return f"**Error:** {_md_escape(str(e))}"
    c = out["counts"]
    return (
        f"{c[new_damage.NEW]} new since pick-up, {c[new_damage.PRE_EXISTING]} pre-existing, "
        f"{c[new_damage.UNVERIFIED]} unverified (compared with inspection "
        f"{out['compared_inspection_id'] or 'none'})"
    )


PICK_A_FLAG = "Click a flag's row to give its verdict."


def _pick_flag(evt: gr.SelectData) -> tuple[int | None, str]:
    """The flag of the clicked row (its id is the first column) and a line naming it."""
    row = evt.row_value or []
    if not row or row[0] in (None, ""):
        return None, PICK_A_FLAG
    flag_id = int(row[0])
    what = ", ".join(str(x) for x in row[1:4] if x not in (None, ""))
    verdict = row[5] if len(row) > 5 and row[5] else "open"
    return flag_id, _md_escape(f"Flag {flag_id} ({what}), now {verdict}: give its verdict below.")


def _decide(
    require: Require, token: str, flag_id: int | None, decision: str, note: str
) -> tuple[str, int | None, str]:
    """Save the picked flag's verdict: the message, and the pick (cleared once saved)."""
    if not flag_id:
        return PICK_A_FLAG, None, PICK_A_FLAG
    user = require(token, Permission.fraud)
    try:
        with session_scope() as session:
            f = new_damage.decide_flag(
                session,
                served_project(session, user),
                int(flag_id),
                decision=decision,
                note=note,
                user=user,
            )
            done = f"Flag {f.id}: {f.decision} by {f.decided_by}."
    except ServiceError as e:
        return f"**Error:** {_md_escape(str(e))}", flag_id, gr.update()
    return done, None, PICK_A_FLAG


def _report(require: Require, token: str, inspection_id: int | None) -> Any:
    if not inspection_id:
        return None
    user = require(token, Permission.view)
    from services.claims.report import build_report

    out = Path(tempfile.mkdtemp(prefix="pb_report_")) / f"inspection-{int(inspection_id)}.pdf"
    with session_scope() as session:
        build_report(session, served_project(session, user), int(inspection_id), out)
    return gr.update(value=str(out), visible=True)


def _vehicle_choices(require: Require, token: str) -> list[tuple[str, int]]:
    user = require(token, Permission.view)
    with session_scope() as session:
        return [
            (" / ".join(x for x in (v.plate, v.vin, v.make, v.vehicle_model) if x), v.id)
            for v in svc.list_vehicles(session, served_project(session, user))
        ]


def _new_vehicle(
    require: Require, token: str, plate: str, vin: str, make: str, model: str, notes: str
) -> tuple[str, Any]:
    """Create a vehicle (leads and admins); the message and the vehicle picker, set to it."""
    user = require(token, Permission.import_)
    try:
        with session_scope() as session:
            v = svc.create_vehicle(
                session,
                served_project(session, user),
                plate=plate,
                vin=vin,
                make=make,
                vehicle_model=model,
                notes=notes,
                author=user.username,
            )
            vid, name = v.id, v.plate or v.vin
    except ServiceError as e:
        return f"**Error:** {_md_escape(str(e))}", gr.update()
    return (
        f"Vehicle {vid} ({_md_escape(name or '')}) added.",
        gr.update(choices=_vehicle_choices(require, token), value=vid),
    )


def _new_inspection(
    require: Require,
    token: str,
    vehicle_id: int | None,
    kind: str,
    when: str,
    claim_number: str,
) -> tuple[str, Any]:
    """Create an inspection (leads and admins); the message and the inspection picker, set
    to it (which shows its empty slot grid)."""
    if not vehicle_id:
        return "Pick the vehicle first (or add one).", gr.update()
    user = require(token, Permission.import_)
    try:
        with session_scope() as session:
            i = svc.create_inspection(
                session,
                served_project(session, user),
                vehicle_id=int(vehicle_id),
                kind=kind,
                inspected_on=when,
                claim_number=claim_number,
                author=user.username,
            )
            iid, name = i.id, i.name
    except ServiceError as e:
        return f"**Error:** {_md_escape(str(e))}", gr.update()
    return (
        f"Inspection {iid} ({_md_escape(name)}) added.",
        gr.update(choices=_choices(require, token), value=iid),
    )


def _upload(
    require: Require, token: str, inspection_id: int | None, slot: str | None, files: Any
) -> str:
    """Upload photos into the picked inspection's ``slot`` (leads and admins): the first into
    the slot, the next ones into ``<slot>_2``, ``<slot>_3``, ...; a bad file or a taken slot is
    reported by name and the others go on."""
    if not inspection_id:
        return "Pick (or add) an inspection first."
    if not slot:
        return "Pick a slot."
    paths = [Path(f if isinstance(f, str) else f.name) for f in files or []]
    if not paths:
        return "Choose one or more photos."
    user = require(token, Permission.import_)
    limit = get_settings().max_image_bytes
    payload, refused = [], []
    for p in paths:
        try:
            size = p.stat().st_size
        except OSError as e:
            refused.append(f"{p.name}: could not be read ({e.strerror})")
            continue
        if size > limit:  # not read into memory at all
            refused.append(
                f"{p.name}: {size:,} bytes, over the {limit:,} limit "
                f"(setting {env_name('max_image_bytes')}); not uploaded"
            )
            continue
        payload.append((p.name, p.read_bytes()))
    head = "Nothing uploaded."
    problems = list(refused)
    if payload:
        try:
            with session_scope() as session:
                out = svc.upload_into_slot(
                    session, served_project(session, user), int(inspection_id), slot, payload
                )
        except ServiceError as e:
            return f"**Error:** {_md_escape(str(e))}"
        head = out.summary()
        problems += out.messages
    return _md_escape("\n\n".join([head, *(f"- {m}" for m in problems)]))


def inspections_panel(token: gr.State, require: Require) -> None:
    """Build the tab's components and wire them; ``token`` is the session's token state."""
    with gr.Row():
        pick = gr.Dropdown(choices=[], label="Inspection", elem_id="pb-insp-pick", scale=3)
        refresh = gr.Button("Refresh", size="sm", scale=0, elem_id="pb-insp-refresh")
        pdf_btn = gr.Button("Download PDF report", size="sm", scale=0, elem_id="pb-insp-pdf")
    with gr.Accordion(
        "Add a vehicle, an inspection or photos (leads and admins)",
        open=False,
        elem_id="pb-insp-manage",
    ):
        with gr.Row(equal_height=False):
            with gr.Column(min_width=220):
                gr.Markdown("**New vehicle** (plate or VIN)")
                v_plate = gr.Textbox(label="Plate", elem_id="pb-insp-v-plate")
                v_vin = gr.Textbox(label="VIN", elem_id="pb-insp-v-vin")
                with gr.Row():
                    v_make = gr.Textbox(label="Make", elem_id="pb-insp-v-make", min_width=100)
                    v_model = gr.Textbox(label="Model", elem_id="pb-insp-v-model", min_width=100)
                v_notes = gr.Textbox(label="Notes", lines=2, elem_id="pb-insp-v-notes")
                v_add = gr.Button("Add vehicle", size="sm", elem_id="pb-insp-v-add")
                v_msg = gr.Markdown(elem_id="pb-insp-v-msg")
            with gr.Column(min_width=220):
                gr.Markdown("**New inspection**")
                i_vehicle = gr.Dropdown(choices=[], label="Vehicle", elem_id="pb-insp-i-vehicle")
                i_kind = gr.Radio(
                    list(svc.KINDS), value="pick_up", label="Kind", elem_id="pb-insp-i-kind"
                )
                i_date = gr.Textbox(
                    label="Date", placeholder="YYYY-MM-DD", elem_id="pb-insp-i-date"
                )
                i_claim = gr.Textbox(label="Claim number", elem_id="pb-insp-i-claim")
                i_add = gr.Button("Add inspection", size="sm", elem_id="pb-insp-i-add")
                i_msg = gr.Markdown(elem_id="pb-insp-i-msg")
            with gr.Column(min_width=220):
                gr.Markdown("**Upload photos into the picked inspection**")
                u_slot = gr.Dropdown(
                    choices=list(svc.BASE_SLOTS),
                    value="front",
                    allow_custom_value=True,
                    label="Slot (several photos: slot, slot_2, slot_3, ...)",
                    elem_id="pb-insp-u-slot",
                )
                u_files = gr.File(
                    file_count="multiple",
                    file_types=["image"],
                    label="Photos",
                    height=140,
                    elem_id="pb-insp-u-files",
                )
                u_go = gr.Button("Upload into slot", size="sm", elem_id="pb-insp-u-go")
                u_msg = gr.Markdown(elem_id="pb-insp-u-msg")
    info = gr.Markdown(elem_id="pb-insp-info")
    pdf = gr.File(label="Report", elem_id="pb-insp-pdf-file", visible=False)
    grid = gr.Gallery(
        label="Slots (slot: status)",
        columns=6,
        height=230,
        object_fit="contain",
        # Gradio widens the columns to the full row when there are fewer photos than
        # columns, and the cells then outgrow the gallery's height: photos looked cropped
        fit_columns=False,
        elem_id="pb-insp-grid",
    )
    parts = gr.Dataframe(
        headers=["slot", "part", "damage", "severity", "P(damaged)", "model version / by"],
        label="Damage per part (and fake flags)",
        interactive=False,
        elem_id="pb-insp-parts",
    )
    with gr.Row():
        find = gr.Button("Find new damage since pick-up", size="sm", elem_id="pb-insp-find")
        find_msg = gr.Markdown(elem_id="pb-insp-find-msg")
    flags = gr.Dataframe(
        headers=["flag", "slot", "class", "state", "IoU", "verdict", "note"],
        label="New-damage flags",
        interactive=False,
        elem_id="pb-insp-flags",
    )
    flag_id = gr.State(None)
    picked = gr.Markdown(PICK_A_FLAG, elem_id="pb-insp-flag-picked")
    with gr.Row():
        decision = gr.Radio(
            list(new_damage.DECISIONS),
            value=new_damage.DECISIONS[0],
            label="Verdict",
            elem_id="pb-insp-flag-verdict",
        )
        note = gr.Textbox(label="Note", elem_id="pb-insp-flag-note")
        decide = gr.Button("Save verdict", size="sm", elem_id="pb-insp-decide")
    decide_msg = gr.Markdown(elem_id="pb-insp-decide-msg")
    gr.Markdown("### Compare with the pick-up")
    with gr.Row():
        slot = gr.Dropdown(choices=[], label="Slot", elem_id="pb-insp-slot")
        opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Pick-up overlay opacity")
    compare_msg = gr.Markdown(elem_id="pb-insp-compare-msg")
    with gr.Row():
        pre_img = gr.Image(label="Pick-up", interactive=False, elem_id="pb-insp-pre")
        post_img = gr.Image(
            label="Return, pick-up overlaid (new damage orange)",
            interactive=False,
            elem_id="pb-insp-post",
        )

    def load_choices(t: str) -> Any:
        return gr.update(choices=_choices(require, t))

    def show(t: str, i: int | None) -> tuple:
        return _show(require, t, i)

    def compare(t: str, i: int | None, s: str | None, o: float) -> tuple:
        return _compare(require, t, i, s, o)

    shown = [info, grid, parts, flags, slot]
    refresh.click(load_choices, [token], [pick])
    pick.focus(load_choices, [token], [pick])
    pick.change(show, [token, pick], shown)
    pick.change(lambda: (None, PICK_A_FLAG), None, [flag_id, picked])
    flags.select(_pick_flag, None, [flag_id, picked])
    find.click(lambda t, i: _find_new(require, t, i), [token, pick], [find_msg]).then(
        show, [token, pick], shown
    )
    decide.click(
        lambda t, f, d, n: _decide(require, t, f, d, n),
        [token, flag_id, decision, note],
        [decide_msg, flag_id, picked],
    ).then(show, [token, pick], shown)
    pdf_btn.click(lambda t, i: _report(require, t, i), [token, pick], [pdf])
    i_vehicle.focus(lambda t: gr.update(choices=_vehicle_choices(require, t)), [token], [i_vehicle])
    v_add.click(
        lambda t, *a: _new_vehicle(require, t, *a),
        [token, v_plate, v_vin, v_make, v_model, v_notes],
        [v_msg, i_vehicle],
    )
    i_add.click(
        lambda t, *a: _new_inspection(require, t, *a),
        [token, i_vehicle, i_kind, i_date, i_claim],
        [i_msg, pick],
    )
    u_go.click(
        lambda t, i, s_, f: _upload(require, t, i, s_, f),
        [token, pick, u_slot, u_files],
        [u_msg],
    ).then(show, [token, pick], shown)
    for ev in (slot.change, opacity.release):
        ev(compare, [token, pick, slot, opacity], [pre_img, post_img, compare_msg])
