"""CVAT XML through the services: import into the store, export back (XML and zip), the
upload path (``format=cvat``) and the dashboard's export choice."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.geometry import Polygon, Shape
from core.instances import Instances
from core.records import ImageRecord, LabelResolver
from core.taxonomy import default_taxonomy
from exports import cvat
from exports.compare import compare_records

TAX = default_taxonomy()


def _square(x: float, y: float, s: float) -> np.ndarray:
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], dtype=np.float64)


def _cvat_folder(tmp_path: Path) -> tuple[Path, list[ImageRecord]]:
    """An unpacked CVAT export: annotations.xml with the photos in images/."""
    donut = Shape((Polygon(_square(10, 10, 30), (_square(20, 20, 10),)),))
    parts = Shape((Polygon(_square(50, 5, 10)), Polygon(_square(70, 5, 10))))
    inst = Instances(
        [Shape.from_ring(_square(5, 50, 20)), parts, donut],
        [TAX.by_name(n).id for n in ("dent", "scratch", "hood")],
        attributes=[{"severity": "minor", "occluded": True}, {"fake": True}, {}],
    )
    recs = [ImageRecord("a.jpg", 100, 80, inst, meta={"cvat_tags": ["rain"]})]
    folder = tmp_path / "cvat"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (100, 80), "red").save(folder / "images" / "a.jpg")
    cvat.write(recs, TAX, folder / "annotations.xml", zipped=False)
    return folder, recs


def test_import_then_export_round_trip(db_session, project, tmp_path: Path) -> None:
    from services.data_io.exports import export_archive, export_cvat
    from services.data_io.imports import import_cvat

    folder, recs = _cvat_folder(tmp_path)
    report = import_cvat(db_session, project, folder / "annotations.xml")
    assert (report.images_added, report.instances_added, report.instances_failed) == (1, 3, 0)
    assert import_cvat(db_session, project, folder / "annotations.xml").instances_added == 0

    counts = export_cvat(db_session, project, tmp_path / "out.xml")
    assert counts == {"images": 1, "annotations": 3}
    back, rep = cvat.parse(tmp_path / "out.xml", LabelResolver(TAX), source="out.xml")
    assert not rep.failed
    want = [ImageRecord("a.jpg", 100, 80, recs[0].instances)]
    assert compare_records(want, back, atol=0.0, min_iou=1.0) == []
    assert back[0].meta["cvat_tags"] == ["rain"]  # the photo's tag, through the store

    out = export_archive(db_session, project, "cvat", tmp_path / "dl", status="labelled")
    with zipfile.ZipFile(out.path) as z:
        assert sorted(z.namelist()) == ["annotations.xml", "images/a.jpg"]
    assert out.media_type == "application/zip"


def test_upload_with_format_cvat(db_session, project) -> None:
    import io

    from services.data_io.label_uploads import import_label_upload

    photo = io.BytesIO()
    Image.new("RGB", (100, 80), "blue").save(photo, format="JPEG")
    xml = cvat.build([ImageRecord("a.jpg", 100, 80, Instances.empty())], TAX)
    xml = xml.replace(
        b'height="80" />',
        b'height="80"><box label="dent" xtl="1" ytl="1" xbr="9" ybr="9" occluded="0"/></image>',
    )
    report = import_label_upload(
        db_session,
        project,
        fmt="cvat",
        label_file=("annotations.xml", xml),
        images=[("a.jpg", photo.getvalue())],
    )
    assert (report.images_added, report.instances_added) == (1, 1)


def test_upload_that_is_not_cvat_xml_is_refused(db_session, project) -> None:
    from services.data_io.label_uploads import import_label_upload
    from services.errors import Invalid

    with pytest.raises(Invalid, match="labels.xml: not valid XML"):
        import_label_upload(
            db_session, project, fmt="cvat", label_file=("labels.xml", b'{"images": []}')
        )


def test_cli_lists_cvat_both_ways() -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    assert "cvat" in runner.invoke(app, ["import", "--help"]).output
    assert "cvat" in runner.invoke(app, ["export", "--help"]).output
