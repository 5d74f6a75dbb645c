"""The PDF damage report of an inspection, built with reportlab.

``report_data`` gathers what the report shows (pure data, one query pass); ``render_pdf``
lays it out: vehicle and inspection; each photo with its overlays (parts, damage, fake flags,
new damage) at ``report_photo_dpi``; the table of parts (damage class, severity, P(damaged)
and the model version that produced it); new vs pre-existing damage with the pick-up it was
compared against; fake flags with the analyst's note; who labelled and reviewed, and when;
page numbers. Text is real text (selectable, found by ``pdftotext``). Every string that a
user wrote is escaped before it reaches a ``Paragraph``, whose mini-language would
otherwise interpret ``<b>`` or ``&``.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from sqlmodel import Session, select

from core.config import get_settings
from core.geometry import Shape
from core.instances import SEVERITIES
from core.taxonomy import GROUPS
from db.models import (
    Annotation,
    DamageFlag,
    Image,
    Inspection,
    ModelVersion,
    Prediction,
    PredictionState,
    Project,
    ReviewDecision,
    Vehicle,
    utcnow,
)
from services.accounts.projects import project_taxonomy
from services.claims.inspections import get_inspection, inspection_photos

#: printable width of the photos on an A4 page, inches
PHOTO_WIDTH_IN = 6.7
NEW_COLOUR = (255, 140, 0)
DAMAGE_COLOUR = (220, 30, 30)
FAKE_COLOUR = (200, 0, 200)
_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
_FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@dataclass
class PhotoData:
    image: Image
    slot: str
    #: (group, class name, Shape, attributes, is new damage)
    overlays: list[tuple[str, str, Shape, dict[str, Any], bool]] = field(default_factory=list)
    labelled_by: list[str] = field(default_factory=list)
    labelled_at: datetime | None = None
    reviews: list[str] = field(default_factory=list)


@dataclass
class ReportData:
    project: Project
    vehicle: Vehicle
    inspection: Inspection
    compared: Inspection | None
    photos: list[PhotoData]
    #: slot, part, damage classes, severity, P(damaged), model version
    parts: list[tuple[str, str, str, str, str, str]]
    #: slot, damage class, state, IoU, alignment, verdict, note, by/when
    flags: list[tuple[str, ...]]
    #: slot, class, note, author
    fakes: list[tuple[str, str, str, str]]
    generated_at: datetime


def _box(shape: Shape) -> np.ndarray:
    return shape.bbox


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box ``a`` inside box ``b``."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    area = (a[2] - a[0]) * (a[3] - a[1])
    return float(max(0.0, x1 - x0) * max(0.0, y1 - y0) / area) if area > 0 else 0.0


def _when(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M UTC") if d else ""


def report_data(session: Session, project: Project, inspection_id: int) -> ReportData:
    inspection = get_inspection(session, project, inspection_id)
    vehicle = session.get(Vehicle, inspection.vehicle_id)
    tax = project_taxonomy(project)

    def name(cid: int) -> str:
        try:
            return tax.by_id(cid).name
        except Exception:  # a class of another taxonomy: show its id
            return f"class {cid}"

    rows = inspection_photos(session, inspection.id)
    ids = [im.id for _, im in rows]
    anns: dict[int, list[Annotation]] = defaultdict(list)
    preds: dict[int, list[Prediction]] = defaultdict(list)
    flags: dict[int, list[DamageFlag]] = defaultdict(list)
    reviews: dict[int, list[ReviewDecision]] = defaultdict(list)
    if ids:
        for a in session.exec(
            select(Annotation).where(Annotation.image_id.in_(ids), Annotation.deleted == False)  # noqa: E712
        ):
            anns[a.image_id].append(a)
        for p in session.exec(
            select(Prediction).where(
                Prediction.image_id.in_(ids),
                Prediction.state.not_in((PredictionState.rejected, PredictionState.withdrawn)),
            )
        ):
            preds[p.image_id].append(p)
        for f in session.exec(select(DamageFlag).where(DamageFlag.image_id.in_(ids))):
            if f.inspection_id == inspection.id:
                flags[f.image_id].append(f)
        for r in session.exec(select(ReviewDecision).where(ReviewDecision.image_id.in_(ids))):
            reviews[r.image_id].append(r)
    versions = {m.id: m.name for m in session.exec(select(ModelVersion))}
    compared_id = next((f.compared_inspection_id for fs in flags.values() for f in fs), None)
    compared = session.get(Inspection, compared_id) if compared_id else None

    photos: list[PhotoData] = []
    part_rows: list[tuple[str, ...]] = []
    flag_rows: list[tuple[str, ...]] = []
    fake_rows: list[tuple[str, ...]] = []
    for slot_row, image in rows:
        pd = PhotoData(image=image, slot=slot_row.slot)
        new_ids = {
            (f.source, f.source_id) for f in flags[image.id] if f.state == "new_since_pick_up"
        }
        labelled = anns[image.id]
        shown = _photo_shapes(labelled, preds[image.id])
        for group, cid, shape, attrs, src, sid in shown:
            is_fake = group == "fake" or bool(attrs.get("fake"))
            pd.overlays.append(
                ("fake" if is_fake else group, name(cid), shape, attrs, (src, sid) in new_ids)
            )
            if is_fake:
                fake_rows.append(
                    (pd.slot, name(cid), str(attrs.get("fake_note") or ""), _author(labelled, sid))
                )
        # the part table: each part with the damage on it and the model's P(damaged)
        boxes = {id(s): _box(s) for _, _, s, _, _, _ in shown}
        damages = [x for x in shown if x[0] == "damage" and not x[3].get("fake")]
        scored = [p for p in preds[image.id] if p.group == "part" and p.probs.get("damaged")]
        scored_boxes = [_box(Shape.from_json(p.geometry, trusted=True)) for p in scored]
        for group, cid, shape, _attrs, _src, _sid in shown:
            if group != "part":
                continue
            pb = boxes[id(shape)]
            on = [
                d
                for d in damages
                if d[3].get("part_id") == cid
                or (d[3].get("part_id") is None and _overlap(boxes[id(d[2])], pb) >= 0.5)
            ]
            classes = ", ".join(sorted({name(d[1]) for d in on})) or "none"
            sev = [d[3].get("severity") for d in on if d[3].get("severity") in SEVERITIES]
            severity = max(sev, key=SEVERITIES.index) if sev else ""
            p_damaged, version = "", ""
            match = [
                (_box_iou(pb, b), p)
                for b, p in zip(scored_boxes, scored, strict=True)
                if p.class_id == cid
            ]
            if match:
                best_iou, best = max(match, key=lambda t: t[0])
                if best_iou >= 0.5:
                    p_damaged = f"{float(best.probs['damaged'][-1]):.2f}"
                    version = versions.get(best.model_version_id, "")
            part_rows.append((pd.slot, name(cid), classes, severity, p_damaged, version))
        for f in flags[image.id]:
            a = f.alignment or {}
            how = (
                f"{a.get('method')} ({a.get('inliers')} inliers, conf {a.get('confidence')})"
                if a.get("homography")
                else f"not aligned: {a.get('reason') or ''}"
            )
            flag_rows.append(
                (
                    pd.slot,
                    name(f.class_id),
                    f.state,
                    "" if f.best_iou is None else f"{f.best_iou:.2f}",
                    how,
                    f.decision or "open",
                    f.note or "",
                    f"{f.decided_by or ''} {_when(f.decided_at)}".strip(),
                )
            )
        pd.labelled_by = sorted({a.author for a in labelled if a.author})
        pd.labelled_at = max((a.updated_at for a in labelled), default=None)
        pd.reviews = [
            f"{r.reviewer}: {r.decision} {_when(r.created_at)}"
            for r in sorted(reviews[image.id], key=lambda r: r.created_at)
        ] or sorted({f"{a.reviewed_by}: {a.review_state}" for a in labelled if a.reviewed_by})
        photos.append(pd)
    return ReportData(
        project, vehicle, inspection, compared, photos, part_rows, flag_rows, fake_rows, utcnow()
    )


#: One shape a photo shows: group, class id, region, attributes, source ("annotation" or
#: "prediction") and the source row's id.
Shown = tuple[str, int, Shape, dict[str, Any], str, int]


def _photo_shapes(labelled: list[Annotation], predicted: list[Prediction]) -> list[Shown]:
    """What a photo shows, group by group: its labels of a group, or, where it has none of
    that group, its pending predictions of it. A return photo whose damage is labelled still
    gets its parts from the part model, so the part table is never empty for want of part
    labels."""
    shown: list[Shown] = []
    for group in GROUPS:
        mine = [a for a in labelled if a.group == group]
        if mine:
            shown += [
                (
                    a.group,
                    a.class_id,
                    Shape.from_json(a.geometry, trusted=True),
                    a.attributes or {},
                    "annotation",
                    a.id,
                )
                for a in mine
            ]
            continue
        shown += [
            (
                p.group,
                p.class_id,
                Shape.from_json(p.geometry, trusted=True),
                _predicted_attributes(p),
                "prediction",
                p.id,
            )
            for p in predicted
            if p.group == group and p.state == PredictionState.pending
        ]
    return shown


def _predicted_attributes(p: Prediction) -> dict[str, Any]:
    """A predicted damage's part, as a label's ``part_id`` says it: the part model's map under
    its mask (``extra["part"]``, :func:`core.damage_parts.locate_on_parts`), so the part table
    counts it on the part it covers most rather than on every part its box overlaps."""
    part = (p.extra or {}).get("part")
    if p.group == "damage" and isinstance(part, dict) and part.get("class_id") is not None:
        return {"part_id": int(part["class_id"])}
    return {}


def _author(labelled: list[Annotation], sid: int) -> str:
    return next((a.author or "" for a in labelled if a.id == sid), "")


# -- rendering ------------------------------------------------------------------------


def _fonts() -> tuple[str, str]:
    """DejaVu Sans when installed (any script), else Helvetica (Latin-1 only)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if Path(_FONT).is_file() and Path(_FONT_BOLD).is_file():
        if "DejaVuSans" not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont("DejaVuSans", _FONT))
            pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", _FONT_BOLD))
        return "DejaVuSans", "DejaVuSans-Bold"
    return "Helvetica", "Helvetica-Bold"


def _hex(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def overlay_photo(photo: PhotoData, max_px: int, colours: dict[str, str]) -> tuple[bytes, int, int]:
    """The photo with its overlays drawn, at most ``max_px`` wide, as JPEG bytes."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    from services.labelling.images import load_image_array

    arr = load_image_array(photo.image, max_side=max_px)
    img = PILImage.fromarray(arr)
    s = img.width / photo.image.width
    draw = ImageDraw.Draw(img)
    order = {"part": 0, "damage": 1, "fake": 2}
    for group, cname, shape, _attrs, is_new in sorted(
        photo.overlays, key=lambda o: (o[4], order.get(o[0], 3))
    ):
        if is_new:
            colour, width = NEW_COLOUR, 5
        elif group == "part":
            colour, width = _hex(colours.get(cname, "#3070ff")), 2
        elif group == "fake":
            colour, width = FAKE_COLOUR, 4
        else:
            colour, width = DAMAGE_COLOUR, 3
        for poly in shape.polygons:
            pts = [tuple(p) for p in (poly.exterior * s).tolist()]
            if len(pts) >= 2:
                draw.line([*pts, pts[0]], fill=colour, width=width, joint="curve")
        if group != "part":
            x0, y0 = (_box(shape)[:2] * s).tolist()
            label = ("NEW " if is_new else "") + ("FAKE " if group == "fake" else "") + cname
            draw.rectangle([x0, max(0, y0 - 14), x0 + 7 * len(label), max(14, y0)], fill=colour)
            draw.text((x0 + 2, max(0, y0 - 13)), label, fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue(), img.width, img.height


def render_pdf(data: ReportData) -> bytes:
    from reportlab import rl_config
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm, inch
    from reportlab.pdfgen import canvas as rl_canvas
    from reportlab.platypus import (
        Image as RLImage,
    )
    from reportlab.platypus import (
        KeepTogether,
        LongTable,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        TableStyle,
    )

    # photos go in as binary JPEG streams: reportlab's default ASCII85 wrapping runs in pure
    # Python without its C accelerator and took ~3 s a photo
    rl_config.useA85 = 0
    regular, bold = _fonts()
    styles = getSampleStyleSheet()
    body = ParagraphStyle("b", parent=styles["BodyText"], fontName=regular, fontSize=9, leading=11)
    small = ParagraphStyle("s", parent=body, fontSize=7.5, leading=9)
    h1 = ParagraphStyle("h1", parent=styles["Heading1"], fontName=bold, fontSize=16)
    h2 = ParagraphStyle("h2", parent=styles["Heading2"], fontName=bold, fontSize=12)

    def p(text: object, style=body) -> Paragraph:
        return Paragraph(escape(str(text if text is not None else "")), style)

    def table(rows: list[tuple], header: tuple[str, ...], widths: list[float]) -> LongTable:
        t = LongTable(
            [[p(h, small) for h in header], *[[p(c, small) for c in r] for r in rows]],
            colWidths=widths,
            repeatRows=1,
        )
        t.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e9ef")),
                    ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#9aa3b0")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return t

    class NumberedCanvas(rl_canvas.Canvas):
        """Writes "Page n of m" once the page count is known."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._pages: list[dict] = []

        def showPage(self) -> None:  # noqa: N802 (reportlab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont(regular, 8)
                self.drawRightString(
                    A4[0] - 2 * cm, 1.2 * cm, f"Page {self._pageNumber} of {total}"
                )
                self.drawString(2 * cm, 1.2 * cm, footer)
                super().showPage()
            super().save()

    v, i = data.vehicle, data.inspection
    footer = f"Panelbeater damage report: inspection {i.id}"
    story: list[Any] = [
        Paragraph(f"Damage report: {escape(i.name)}", h1),
        p(f"Project {data.project.name}; generated {_when(data.generated_at)}", small),
        Spacer(1, 6),
        Paragraph("Vehicle and inspection", h2),
        table(
            [
                ("Plate", v.plate or "", "Inspection", i.name),
                ("VIN", v.vin or "", "Kind", i.kind),
                (
                    "Make",
                    v.make or "",
                    "Date",
                    i.inspected_on.isoformat() if i.inspected_on else "",
                ),
                ("Model", v.vehicle_model or "", "Claim number", i.claim_number or ""),
                ("Vehicle notes", v.notes or "", "Inspection notes", i.notes or ""),
            ],
            ("Field", "Vehicle", "Field", "Inspection"),
            [3 * cm, 5.5 * cm, 3 * cm, 5.5 * cm],
        ),
        Spacer(1, 8),
        Paragraph("Parts", h2),
    ]
    if data.parts:
        story.append(
            table(
                data.parts,
                ("Slot", "Part", "Damage", "Severity", "P(damaged)", "Model version"),
                [2.2 * cm, 3.4 * cm, 3.8 * cm, 2 * cm, 2.2 * cm, 3.4 * cm],
            )
        )
    else:
        story.append(p("No parts are labelled or predicted on these photos."))
    story += [Spacer(1, 8), Paragraph("New and pre-existing damage", h2)]
    if data.compared is not None:
        c = data.compared
        when = c.inspected_on.isoformat() if c.inspected_on else "undated"
        story.append(p(f"Compared against pick-up inspection {c.name} ({when}, id {c.id})."))
    if data.flags:
        story.append(
            table(
                data.flags,
                ("Slot", "Damage", "State", "IoU", "Alignment", "Verdict", "Note", "By"),
                [1.5 * cm, 1.8 * cm, 3.0 * cm, 1.1 * cm, 3.1 * cm, 1.9 * cm, 2.8 * cm, 1.8 * cm],
            )
        )
    else:
        story.append(p("No comparison with a pick-up inspection has been made."))
    story += [Spacer(1, 8), Paragraph("Fake-damage flags", h2)]
    if data.fakes:
        story.append(
            table(
                data.fakes,
                ("Slot", "Class", "Analyst's note", "By"),
                [2.4 * cm, 3.4 * cm, 8.2 * cm, 3 * cm],
            )
        )
    else:
        story.append(p("No damage on these photos is flagged as fake."))
    story += [Spacer(1, 8), Paragraph("Labelling and review", h2)]
    story.append(
        table(
            [
                (
                    ph.slot,
                    ph.image.file_name,
                    ph.image.status.value,
                    ", ".join(ph.labelled_by),
                    _when(ph.labelled_at),
                    "; ".join(ph.reviews),
                )
                for ph in data.photos
            ],
            ("Slot", "Photo", "Status", "Labelled by", "Last labelled", "Reviewed"),
            [2 * cm, 3.2 * cm, 1.8 * cm, 2.8 * cm, 3.4 * cm, 3.8 * cm],
        )
    )
    colours = {c.name: c.color for c in project_taxonomy(data.project)}
    dpi = get_settings().report_photo_dpi
    max_px = int(PHOTO_WIDTH_IN * dpi)
    for ph in data.photos:
        jpeg, w, h = overlay_photo(ph, max_px, colours)
        width = PHOTO_WIDTH_IN * inch
        height = width * h / w
        if height > 7.5 * inch:
            width, height = width * 7.5 * inch / height, 7.5 * inch
        story.append(
            KeepTogether(
                [
                    Spacer(1, 8),
                    Paragraph(f"Photo: {escape(ph.slot)}", h2),
                    p(
                        f"{ph.image.file_name} (image {ph.image.id}, {ph.image.width}x"
                        f"{ph.image.height})",
                        small,
                    ),
                    RLImage(io.BytesIO(jpeg), width=width, height=height),
                    p(
                        "Outlines: parts in their class colour, damage red, fake damage "
                        "magenta, new damage since pick-up orange.",
                        small,
                    ),
                ]
            )
        )
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=2 * cm,
        rightMargin=2 * cm,
        topMargin=1.8 * cm,
        bottomMargin=2 * cm,
        title=f"Damage report {i.name}",
        author="Panelbeater",
    )
    doc.build(story, canvasmaker=NumberedCanvas)
    return buf.getvalue()


def build_report(
    session: Session, project: Project, inspection_id: int, out: str | Path | None = None
) -> bytes:
    """The inspection's PDF report; written to ``out`` too when given."""
    pdf = render_pdf(report_data(session, project, inspection_id))
    if out is not None:
        Path(out).write_bytes(pdf)
    return pdf
