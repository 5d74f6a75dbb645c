"""A real Label Studio server judges our tasks, config and parser (started from its own venv).

``.ci/label_studio.sh`` installs ``label-studio`` into ``$PANELBEATER_LS_VENV`` (default
/opt/panelbeater-ls-venv). Without it the test skips, or fails when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from core.records import LabelResolver, load_label_map
from core.taxonomy import default_taxonomy
from exports import coco, label_studio
from exports.compare import compare_records, instance_count
from exports.synthetic import tiny_predictions, tiny_records

TAX = default_taxonomy()
DATA = Path(__file__).parent / "data"
LS_VENV = Path(os.environ.get("PANELBEATER_LS_VENV", "/opt/panelbeater-ls-venv"))
LS_BIN = LS_VENV / "bin" / "label-studio"
TOKEN = "panelbeater-test-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not LS_BIN.is_file():
        msg = f"Label Studio is not installed at {LS_BIN}; run .ci/label_studio.sh (or set PANELBEATER_LS_VENV)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    data_dir = tmp_path_factory.mktemp("ls-data")
    port = _free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": "tester@example.com",
        "LABEL_STUDIO_PASSWORD": "panelbeater-pw-123",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "PATH": f"{LS_VENV / 'bin'}:{os.environ.get('PATH', '')}",
    }
    env.pop("VIRTUAL_ENV", None)
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [str(LS_BIN), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=data_dir,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (data_dir / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(
                    f"Label Studio did not answer /health on {url} (exit {proc.poll()}):\n{tail}"
                )
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_push_read_back_export_and_parse(server: str, datasets_dir: Path) -> None:
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=server, api_key=TOKEN)
    assert client.users.whoami().email == "tester@example.com"
    real, _ = coco.parse(
        json.loads((datasets_dir / "coco_car_damage/val/COCO_merged_annos.json").read_text()),
        LabelResolver(TAX, load_label_map(DATA / "coco_car_damage_map.json")),
        source="val",
    )
    recs = tiny_records(TAX) + real
    for r, p in zip(recs, tiny_predictions(TAX), strict=False):
        r.meta["predictions"] = p.instances
        r.meta["model_version"] = "panelbeater-test"
    project = client.projects.create(
        title="panelbeater live test", label_config=label_studio.labeling_config(TAX)
    )
    tasks = label_studio.build_tasks(recs, TAX, include_predictions=True)
    client.projects.import_tasks(id=project.id, request=tasks)

    listed = list(client.tasks.list(project=project.id, fields="all", page_size=100))
    assert len(listed) == len(recs)
    n_preds = sum(len(t.predictions or []) for t in listed)
    assert n_preds == sum(1 for r in recs if len(r.meta.get("predictions") or []))
    versions = {p.model_version for t in listed for p in (t.predictions or [])}
    assert versions == {"panelbeater-test"}

    raw = b"".join(
        client.projects.exports.download_sync(
            id=project.id, export_type="JSON", download_all_tasks=True
        )
    )
    exported = json.loads(raw)
    assert len(exported) == len(recs)
    resolver = LabelResolver(TAX)
    back, report = label_studio.parse(exported, resolver, source="label-studio export")
    assert not report.failed and not resolver.unknown
    assert instance_count(back) == instance_count(recs)
    # the server keeps our data fields, so records match by file name; brush shapes by mask
    assert compare_records(recs, back, atol=1e-6, min_iou=1.0, splits=True) == []
    # the JSON export names predictions by id; the task API returns them whole: parse those
    api_tasks = [t.model_dump(mode="json") for t in listed]
    back_api, report = label_studio.parse(
        api_tasks, LabelResolver(TAX), source="label-studio tasks API"
    )
    assert not report.failed
    assert compare_records(recs, back_api, atol=1e-6, min_iou=1.0) == []
    with_preds = {b.file_name: b for b in back_api if len(b.meta.get("predictions") or [])}
    assert set(with_preds) == {"a.jpg", "sub/b.png"}
    for r in recs[:2]:
        got = with_preds[r.file_name]
        assert got.meta["model_version"] == "panelbeater-test"
        expected = [r.meta["predictions"]]
        assert (
            compare_records(
                [type(r)(r.file_name, r.width, r.height, expected[0])],
                [type(r)(r.file_name, r.width, r.height, got.meta["predictions"])],
                atol=1e-6,
                min_iou=1.0,
                scores=True,
            )
            == []
        )
