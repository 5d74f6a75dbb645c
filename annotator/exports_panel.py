"""The dashboard's export area: filters (the CLI's ``--status``, ``--split``, ``--group``), a
button per format and the download. The archive comes from ``services.data_io.exports``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.processing_utils import save_file_to_cache

from annotator.access import require
from annotator.export_links import export_dir
from core.records import SPLITS
from core.taxonomy import GROUPS
from db.models import ImageStatus
from db.session import session_scope
from services.accounts.projects import served_project
from services.accounts.users import Permission
from services.data_io.exports import export_archive
from services.errors import ServiceError

#: The export filters' choices (the CLI's ``--status``, ``--split``, ``--group``).
EXPORT_STATUSES = [s.value for s in ImageStatus]


def export_file(
    token: str,
    fmt: str,
    status: list[str] | str | None = None,
    split: str | None = None,
    group: str | None = None,
) -> str:
    """The export as a file in Gradio's cache, in its project's folder there, whose link
    serves it only to members of the project with the export permission
    (``annotator.export_links``); Gradio deletes it after ``annotator.app.CACHE_MAX_AGE_S``,
    and the folder it was written in goes at once. The filters are the CLI's ``--status``
    (several), ``--split`` and ``--group``; empty ones export everything."""
    user = require(token, Permission.export)
    status = ",".join(status) if isinstance(status, list) else status
    out_dir = Path(tempfile.mkdtemp(prefix="panelbeater-ui-export-"))
    try:
        with session_scope() as session:
            project = served_project(session, user)
            out = export_archive(
                session,
                project,
                fmt,
                out_dir,
                status=status or None,
                split=split or None,
                group=group or None,
            )
            project_id = project.id
        return save_file_to_cache(out.path, cache_dir=export_dir(project_id))
    except ServiceError as e:
        raise gr.Error(f"Not exported: {e}") from None
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


@dataclass
class ExportPanel:
    status: gr.Dropdown
    split: gr.Dropdown
    group: gr.Dropdown
    coco: gr.Button
    yolo: gr.Button
    label_studio: gr.Button
    cvat: gr.Button
    download: gr.File

    @property
    def filters(self) -> list[gr.components.Component]:
        """:func:`export_file`'s inputs after the token and the format, in its order."""
        return [self.status, self.split, self.group]


def export_panel() -> ExportPanel:
    """The filters, the buttons and the download, built in the caller's Blocks."""
    with gr.Row(elem_id="pb-export-filters"):
        status = gr.Dropdown(
            choices=EXPORT_STATUSES,
            multiselect=True,
            label="Export photos of status (none: all)",
            elem_id="pb-export-status",
        )
        split = gr.Dropdown(
            choices=[("any", ""), *[(x, x) for x in SPLITS]],
            value="",
            label="Split",
            elem_id="pb-export-split",
        )
        group = gr.Dropdown(
            choices=[("all", ""), *[(x, x) for x in GROUPS]],
            value="",
            label="Group",
            elem_id="pb-export-group",
        )
    with gr.Row():
        coco = gr.Button("Export COCO", size="sm")
        yolo = gr.Button("Export YOLO (zip)", size="sm")
        label_studio = gr.Button("Export Label Studio (zip)", size="sm")
        cvat = gr.Button("Export CVAT (zip)", size="sm")
    download = gr.File(label="Download", interactive=False)
    return ExportPanel(status, split, group, coco, yolo, label_studio, cvat, download)


def wire(token: gr.State, panel: ExportPanel) -> None:
    """Each button exports its format with the filters into the download."""
    inputs = [token, *panel.filters]
    panel.coco.click(lambda t, *f: export_file(t, "coco", *f), inputs, panel.download)
    panel.yolo.click(lambda t, *f: export_file(t, "yolo", *f), inputs, panel.download)
    panel.label_studio.click(
        lambda t, *f: export_file(t, "label-studio", *f), inputs, panel.download
    )
    panel.cvat.click(lambda t, *f: export_file(t, "cvat", *f), inputs, panel.download)
