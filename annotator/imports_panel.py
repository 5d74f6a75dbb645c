"""The dashboard's "Add photos" and "Import labels" groups: photos uploaded through
``services.data_io.imports``, and a label file (and the photos it names) imported as
``panelbeater import ...`` and ``POST /api/imports`` import it, through
``services.data_io.label_uploads``. ``annotator.app`` places the groups and checks the user."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from db.models import User
from db.session import session_scope
from services.accounts.projects import served_project
from services.data_io.imports import IMPORT_STATUSES, import_uploads
from services.data_io.label_uploads import import_label_upload
from services.errors import ServiceError

FORMAT_CHOICES = [
    ("COCO (JSON)", "coco"),
    ("VIA (JSON)", "via"),
    ("YOLO (zip of data.yaml + labels/)", "yolo"),
    ("Label Studio (JSON)", "label_studio"),
    ("CVAT for images 1.1 (XML)", "cvat"),
]
#: The status dropdown's default: the import's own rule (labelled with labels, else new).
FROM_LABELS = "from the labels"
#: Messages listed under the summary; the rest are counted.
SHOWN_MESSAGES = 20


@dataclass
class PhotosPanel:
    files: gr.File
    status: gr.Dropdown
    button: gr.Button
    message: gr.Markdown


#: What the dashboard says while the project has no photos: where to add them.
NO_PHOTOS_HINT = (
    "**This project has no photos yet.** Add them below under **Add photos**, on the server "
    "with `panelbeater import folder DIR`, or through the API with `POST /api/images/upload`."
)


def photos_panel() -> PhotosPanel:
    """The "Add photos" group's components, built inside the caller's Blocks context."""
    with gr.Accordion("Add photos", open=True, elem_id="pb-upload"):
        gr.Markdown(
            "Upload photos here, or on the server run "
            "`panelbeater import folder DIR` (or `import coco FILE --images DIR`)."
        )
        files = gr.File(
            file_count="multiple",
            file_types=["image"],
            label="Photos",
            elem_id="pb-upload-files",
        )
        status = gr.Dropdown(
            choices=list(IMPORT_STATUSES),
            value="new",
            label="Status of the new photos",
            info="A photo already here only moves forward; a rejected one stays.",
            elem_id="pb-upload-status",
        )
        button = gr.Button("Add to project", size="sm", elem_id="pb-upload-button")
        message = gr.Markdown(elem_id="pb-upload-msg")
    return PhotosPanel(files, status, button, message)


def add_photos(user: User, files: list[str] | None, status: str | None = None) -> str:
    """Add the uploaded photos for ``user`` (checked by the caller); a Markdown report."""
    if not files:
        return "Choose one or more photos first."
    payload = [(Path(f).name, Path(f).read_bytes()) for f in files]
    with session_scope() as session:
        report = import_uploads(session, served_project(session, user), payload, status=status)
    lines = [
        f"Added **{report.images_added}** photo(s); {report.images_skipped} already here; "
        f"{report.images_failed} could not be read."
    ]
    lines += [f"- {_md_escape(m)}" for m in report.messages[:20]]
    return "\n".join(lines)


@dataclass
class ImportPanel:
    fmt: gr.Dropdown
    label_file: gr.File
    images: gr.File
    status: gr.Dropdown
    as_predictions: gr.Checkbox
    model_name: gr.Textbox
    label_map: gr.Textbox
    button: gr.Button
    message: gr.Markdown

    @property
    def inputs(self) -> list[gr.components.Component]:
        """The handler's inputs after the token, in :func:`run_import`'s order."""
        return [
            self.fmt,
            self.label_file,
            self.images,
            self.status,
            self.as_predictions,
            self.model_name,
            self.label_map,
        ]


def import_panel() -> ImportPanel:
    """The group's components, built inside the caller's Blocks context."""
    with gr.Accordion("Import labels", open=True, elem_id="pb-import"):
        gr.Markdown(
            "A label file from COCO, VIA, YOLO or Label Studio, with the photos it names "
            "(photos already in the project need not be sent again). Photos with labels "
            "become *labelled*, the others stay *new*; a photo only moves forward. "
            "As predictions, the shapes become pending pre-annotations of the model you name. "
            "Same as `panelbeater import ...` on the server."
        )
        with gr.Row():
            fmt = gr.Dropdown(
                choices=FORMAT_CHOICES, value="coco", label="Format", elem_id="pb-import-format"
            )
            status = gr.Dropdown(
                choices=[FROM_LABELS, *IMPORT_STATUSES],
                value=FROM_LABELS,
                label="Status of the photos",
                info="A photo already here only moves forward; a rejected one stays.",
                elem_id="pb-import-status",
            )
        with gr.Row():
            label_file = gr.File(
                file_count="single",
                file_types=[".json", ".zip", ".xml"],
                label="Label file (.json, .xml for CVAT, or .zip for YOLO)",
                elem_id="pb-import-label-file",
            )
            images = gr.File(
                file_count="multiple",
                file_types=["image"],
                label="Photos it names (optional)",
                elem_id="pb-import-images",
            )
        with gr.Row():
            as_predictions = gr.Checkbox(
                label="As predictions (pending, for annotators to accept or reject)",
                elem_id="pb-import-as-predictions",
            )
            model_name = gr.Textbox(
                label="Model name (with predictions)",
                placeholder="e.g. detectron-v7",
                elem_id="pb-import-model-name",
            )
        label_map = gr.Textbox(
            label="Label map (optional JSON: source label to taxonomy name)",
            placeholder='{"back_bumper": "rear_bumper"}',
            elem_id="pb-import-label-map",
        )
        button = gr.Button("Import", size="sm", elem_id="pb-import-button")
        message = gr.Markdown(elem_id="pb-import-msg")
    return ImportPanel(
        fmt, label_file, images, status, as_predictions, model_name, label_map, button, message
    )


def run_import(
    user: User,
    fmt: str,
    label_file: str | None,
    images: list[str] | None,
    status: str | None,
    as_predictions: bool,
    model_name: str | None,
    label_map: str | None,
) -> str:
    """Import the chosen files for ``user`` (checked by the caller); a Markdown report."""
    if not label_file:
        return "Choose a label file first."
    if as_predictions and not (model_name or "").strip():
        return (
            "**Nothing was imported.** Fill in the model name: the model that made the predictions."
        )
    asked = None if status in (None, "", FROM_LABELS) else status
    try:
        with session_scope() as session:
            report = import_label_upload(
                session,
                served_project(session, user),
                fmt=fmt,
                label_file=(Path(label_file).name, Path(label_file).read_bytes()),
                images=[(Path(f).name, Path(f).read_bytes()) for f in images or []],
                status=asked,
                as_predictions=bool(as_predictions),
                model_name=model_name or None,
                label_map=label_map,
            )
    except ServiceError as e:
        return f"**Nothing was imported.** {_md_escape(str(e))}"
    if as_predictions:
        head = (
            f"Predictions of **{_md_escape(report.model_version)}**: "
            f"**{report.instances_added}** added on {report.images_added} photo(s) (pending); "
            f"{report.images_skipped} photo(s) already had them; "
            f"{report.images_failed} photo(s) not found."
        )
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses.items()))
        head = (
            f"Added **{report.images_added}** photo(s) ({report.images_skipped} already here, "
            f"{report.images_failed} could not be read) and **{report.instances_added}** "
            f"instance(s) ({report.instances_skipped} already here, "
            f"{report.instances_failed} failed). Photos now: {counts or 'none'}."
        )
    lines = [head] + [f"- {_md_escape(m)}" for m in report.messages[:SHOWN_MESSAGES]]
    if len(report.messages) > SHOWN_MESSAGES:
        lines.append(f"- … and {len(report.messages) - SHOWN_MESSAGES} more")
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|&" else c for c in text)
