"""A real Label Studio server (started from its own venv) and a Panelbeater ML backend beside
it, for the live tests and ``bench/bench_ls_backend.py``.

``.ci/label_studio.sh`` installs ``label-studio`` into ``$PANELBEATER_LS_VENV`` (default
/opt/panelbeater-ls-venv).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LS_VENV = Path(os.environ.get("PANELBEATER_LS_VENV", "/opt/panelbeater-ls-venv"))
LS_BIN = LS_VENV / "bin" / "label-studio"
TOKEN = "panelbeater-test-token-0123456789abcdef"
LS_USER = "tester@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic_auth(username: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class ServerFailed(RuntimeError):
    """Label Studio did not come up; the message holds its log's tail."""


@contextmanager
def label_studio(data_dir: Path, timeout_s: float = 150) -> Iterator[str]:
    """Start Label Studio in ``data_dir`` on a free port; yields its URL (user ``LS_USER``
    with the legacy token ``TOKEN``).

    It may call an ML backend and webhooks on this machine: ``ML_BLOCK_LOCAL_IP`` and
    ``SSRF_PROTECTION_ENABLED`` are off (both refuse local addresses by default, and
    ``ML_BLOCK_LOCAL_IP`` refuses the backend's URL when it is connected).
    """
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": LS_USER,
        "LABEL_STUDIO_PASSWORD": "panelbeater-pw-123",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
        "PATH": f"{LS_VENV / 'bin'}:{os.environ.get('PATH', '')}",
    }
    env.pop("VIRTUAL_ENV", None)
    log_path = data_dir / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [str(LS_BIN), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=data_dir,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ServerFailed(
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


@contextmanager
def serve_in_thread(app, timeout_s: float = 20) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free port; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def upload_images(url: str, project_id: int, files: list[tuple[str, bytes]]) -> list[int]:
    """Import ``files`` into a Label Studio project as uploads (one task each, its image at
    ``/data/upload/...``, served to callers with the API key); returns the project's task
    ids, in order."""
    import httpx

    r = httpx.post(
        f"{url}/api/projects/{project_id}/import",
        headers={"Authorization": f"Token {TOKEN}"},
        files=[(f"file{i}", (name, data, "image/png")) for i, (name, data) in enumerate(files)],
        timeout=60,
    )
    r.raise_for_status()
    from label_studio_sdk import LabelStudio

    tasks = LabelStudio(base_url=url, api_key=TOKEN).tasks.list(project=project_id, fields="all")
    return sorted(t.id for t in tasks)


#: The lead the backend's Label Studio connection signs in as.
LEAD, LEAD_PASSWORD = "lead-ls", "lead-ls-password"
#: Label Studio labelling config of the live tests: parts and damage as polygons, and smart
#: keypoints and rectangles for the interactive assistance.
POLYGON_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="polygon" toName="image">
{labels}
  </PolygonLabels>
  <KeyPointLabels name="keypoint" toName="image" smart="true">
{labels}
  </KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true">
{labels}
  </RectangleLabels>
</View>"""


def polygon_config(names: list[str]) -> str:
    labels = "\n".join(f'    <Label value="{n}"/>' for n in names)
    return POLYGON_CONFIG.format(labels=labels)


def random_part_seg(path: Path, seed: int = 0) -> Path:
    """A tiny part_seg with random weights (seeded), saved at ``path``: it predicts the same
    instances for the same pixels every time."""
    import torch

    from core.taxonomy import default_taxonomy
    from models.registry import build

    torch.manual_seed(seed)
    stage = build("part_seg", {"preset": "tiny", "device": "cpu"}, taxonomy=default_taxonomy())
    return Path(stage.save(path))


def seed_backend_store(data_dir: Path, ls_url: str, model_file: Path) -> None:
    """Point the settings at a fresh store in ``data_dir`` that reads Label Studio at
    ``ls_url`` with ``TOKEN``, holding the lead ``LEAD`` and ``model_file`` promoted as
    part_seg-v1 (every stage's bar to pre-annotate at 0: random weights clear no bar)."""
    from core.config import configure, get_settings
    from db.models import Role
    from db.session import init_db, reset_engine, session_scope
    from models.registry import stage_infos
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import create_user
    from services.training.registry import register_version

    configure(
        data_dir=data_dir,
        label_studio_url=ls_url,
        label_studio_api_key=TOKEN,
        pre_annotate_minimum={i.name: 0.0 for i in stage_infos() if i.pre_annotate_minimum},
        device="cpu",
    )
    reset_engine()
    init_db()
    with session_scope() as session:
        get_or_create_project(session)
        create_user(session, username=LEAD, password=LEAD_PASSWORD, role=Role.lead)
        copy = get_settings().data_dir / "incoming-part_seg.pt"
        copy.write_bytes(model_file.read_bytes())
        register_version(session, stage="part_seg", artifact_path=copy, promote=True)
