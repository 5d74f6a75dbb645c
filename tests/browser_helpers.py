"""Seeding a fresh Panelbeater data dir for API and browser tests, and starting a real server.

``seed_workspace`` writes synthetic photos (and copies a few real ones when given), imports them,
adds a model version with pending predictions (a fake-damage one among them), and one user per
role, each with password ``PASSWORD``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

PASSWORD = "correct horse battery"
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where browser tests keep screenshots of the screens they check.
SHOTS = REPO_ROOT / "artifacts" / "screenshots"
ROLES = ("annotator", "reviewer", "fraud_analyst", "lead", "admin")


@dataclass
class Seeded:
    data_dir: Path
    image_ids: list[int]
    prediction_ids: list[int] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)  # role -> username


def synthetic_photo(path: Path, width: int = 640, height: int = 480, seed: int = 0) -> Path:
    """A car-ish test picture: a gradient, a dark body rectangle, two wheels, a scratch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack(
        [(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), np.full_like(xx, 120)],
        axis=-1,
    ).astype(np.uint8)
    img[height // 3 : 2 * height // 3, width // 6 : 5 * width // 6] = (40, 60, 150)
    for cx in (width // 3, 2 * width // 3):
        mask = (xx - cx) ** 2 + (yy - 2 * height // 3) ** 2 < (height // 10) ** 2
        img[mask] = (20, 20, 20)
    img = np.clip(img.astype(np.int16) + rng.integers(0, 8, img.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(img).save(path, quality=90)
    return path


def image_rows(
    project_id: int,
    n: int,
    *,
    path: str = "/nonexistent/{i}.jpg",
    file_name: str = "{i}.jpg",
    sha256: str = "{i:064x}",
    width: int = 64,
    height: int = 48,
) -> list:
    """``n`` Image rows, ``i`` = 0 to n-1 in import order, for tests that never read pixels
    (``path``, ``file_name`` and ``sha256`` are ``str.format`` templates of ``i``); not yet
    added to a session."""
    from db.models import Image

    return [
        Image(
            project_id=project_id,
            path=path.format(i=i),
            file_name=file_name.format(i=i),
            sha256=sha256.format(i=i),
            width=width,
            height=height,
            import_order=i,
        )
        for i in range(n)
    ]


def poll(
    fn: Callable[[], object],
    what: str,
    *,
    timeout: float = 10.0,
    pause: Callable[[float], object] = time.sleep,
):
    """Call ``fn`` until it returns something truthy and return that, pausing ``pause(0.05)``
    between tries; after ``timeout`` seconds, an AssertionError naming ``what`` and the last
    value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        pause(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def model_version(stage: str, version: int, metrics: dict, **fields):
    """A ModelVersion row ``<stage>-v<version>`` with no weights file, measured as ``metrics``
    say; ``fields`` (``promoted``, ``train_snapshot``...) go to the row."""
    from db.models import ModelVersion

    return ModelVersion(
        stage=stage,
        version=version,
        name=f"{stage}-v{version}",
        path="-",
        sha256="0",
        metrics=metrics,
        **fields,
    )


def init_data_dir(data_dir: Path, taxonomy_path: Path | None = None) -> None:
    from core.config import configure
    from db.session import init_db, reset_engine

    configure(data_dir=data_dir, start_worker=False, taxonomy_path=taxonomy_path)
    reset_engine()
    init_db()


def seed_workspace(
    data_dir: Path,
    *,
    n_synthetic: int = 3,
    real_photos: list[Path] | None = None,
    big: tuple[int, int] | None = None,
    n_predictions: int = 3,
    taxonomy_path: Path | None = None,
) -> Seeded:
    """Fill a fresh data dir (configures the process's settings to it)."""
    from db.models import ModelVersion, Prediction
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import create_user
    from services.data_io.imports import import_folder
    from services.labelling.images import queue_ids

    init_data_dir(data_dir, taxonomy_path)
    photos = data_dir / "photos"
    for i in range(n_synthetic):
        synthetic_photo(photos / f"synthetic_{i:02d}.jpg", seed=i)
    for i, p in enumerate(real_photos or []):
        shutil.copy(p, photos / f"real_{i:02d}{p.suffix.lower()}")
    if big is not None:
        synthetic_photo(photos / "zz_big.jpg", width=big[0], height=big[1], seed=99)
    seeded = Seeded(data_dir=data_dir, image_ids=[])
    with session_scope() as session:
        project = get_or_create_project(session)
        import_folder(session, project, photos)
        seeded.image_ids = queue_ids(session, project.id)
        mv = ModelVersion(
            stage="albert",
            version=1,
            name="albert-v1",
            path="/nonexistent",
            sha256="0" * 64,
            # measured above the bar to pre-annotate, so its predictions are offered
            metrics={"damage_map50": 0.41, "holdout": {"damage": {"coco": {"AP50": 0.41}}}},
        )
        session.add(mv)
        session.flush()
        first = seeded.image_ids[0]
        specs = [
            (26, "damage", 0.92, (100, 100, 220, 200)),
            (27, "fake", 0.81, (300, 120, 420, 230)),
            (1, "damage", 0.35, (420, 300, 520, 380)),
        ][:n_predictions]
        for class_id, group, score, (x0, y0, x1, y1) in specs:
            pred = Prediction(
                image_id=first,
                model_version_id=mv.id,
                class_id=class_id,
                group=group,
                geometry=[{"exterior": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "holes": []}],
                score=score,
            )
            session.add(pred)
            session.flush()
            seeded.prediction_ids.append(pred.id)
        for role in ROLES:
            create_user(session, username=f"{role}1", password=PASSWORD, role=role)
            seeded.users[role] = f"{role}1"
    return seeded


def api_client(data_dir: Path, n_synthetic: int = 3):
    """The REST API over a freshly seeded workspace: ``(client, seeded, login)``, as
    :func:`seeded_api_client`."""
    seeded = seed_workspace(data_dir, n_synthetic=n_synthetic)
    client, login = seeded_api_client(seeded)
    return client, seeded, login


def seeded_api_client(seeded: Seeded):
    """The REST API over a seeded workspace: ``(client, login)``, where ``login(role)`` signs
    that role's user in and returns its bearer header."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from api.errors import install_error_handlers
    from api.router import api_router

    app = FastAPI()
    app.include_router(api_router, prefix="/api")
    install_error_handlers(app)
    client = TestClient(app)

    def login(role: str) -> dict[str, str]:
        r = client.post("/api/login", json={"username": seeded.users[role], "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    return client, login


def require_chromium():
    """Skip the calling test module when chromium is absent (under CI=true, fail instead);
    return Playwright's ``sync_api``."""
    import pytest

    if chromium_path() is None:
        if os.environ.get("CI", "").lower() == "true":
            raise RuntimeError(
                "CI=true but no chromium on PATH: install it with `apt-get install -y chromium`"
            )
        pytest.skip(
            "chromium is not installed (apt-get install -y chromium)", allow_module_level=True
        )
    return pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``uvicorn app:create_app --factory`` on loopback in a child process, on ``data_dir``;
    as a context manager, stopped on leaving the block."""

    def __init__(
        self, data_dir: Path, log_path: Path | None = None, extra_env: dict[str, str] | None = None
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PANELBEATER_DATA_DIR": str(data_dir),
            "PANELBEATER_START_WORKER": "false",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "OMP_NUM_THREADS": "1",
            **(extra_env or {}),
        }
        self.log = open(log_path or data_dir / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def _wait(self, timeout: float = 180.0) -> None:
        # Start-up is not under test: on a busy 2-core machine importing Gradio alone has
        # taken over 60 s.
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"server did not answer /api/health within {timeout} s; see {self.log.name}"
        )

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def launch(sync_api) -> Iterator:
    """Headless chromium (Debian's, with ``CHROMIUM_ARGS``), closed on leaving the block."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def script_page(script: Path, global_name: str) -> Iterator:
    """A blank page in headless chromium with ``script`` loaded alone, which must define
    ``global_name``; no script error may follow. Skips where chromium or Playwright is absent."""
    import pytest

    if chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with launch(sync_api) as browser:
        pg = browser.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.set_content(f"<!doctype html><title>{script.stem}</title>")
        pg.add_script_tag(content=script.read_text(encoding="utf-8"))
        assert pg.evaluate(f"typeof {global_name}") == "object", errors
        yield pg
        assert errors == []


def open_page(browser, *, viewport: tuple[int, int] = (1400, 950), timeout_ms: int = 20000, **ctx):
    """A fresh context and page, its script errors collected in ``page.errors``: ``(ctx, page)``.
    ``ctx`` options (``accept_downloads=True``...) go to ``browser.new_context``."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, **ctx)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return context, page


def login(
    page, server: Server, username: str, wait_for: str | None = ".pb-app[data-drawn]"
) -> None:
    """Sign ``username`` in through the login form; wait for ``wait_for`` (by default, a drawn
    photo) when given."""
    page.goto(server.url + "/ui/")
    page.fill("#pb-login-user textarea, #pb-login-user input", username)
    page.fill("#pb-login-password input", PASSWORD)
    page.click("#pb-login-button")
    if wait_for is not None:
        if "pb-app" in wait_for:
            # A lead lands on the dashboard (services.accounts.users.lands_on_dashboard): the
            # workspace loads its photo once opened.
            page.wait_for_selector("#pb-main", state="visible")
            if page.get_by_role("tab", name="Dashboard").count():
                page.wait_for_selector('[role="tab"][aria-selected="true"]:has-text("Dashboard")')
                page.get_by_role("tab", name="Workspace").click()
        page.wait_for_selector(wait_for)


def signed_in_page(
    browser,
    server: Server,
    username: str,
    *,
    wait_for: str | None = ".pb-app[data-drawn]",
    **page_opts,
):
    """:func:`open_page` (``page_opts`` go to it) with ``username`` signed in (:func:`login`,
    waiting for ``wait_for``): ``(ctx, page)``."""
    context, page = open_page(browser, **page_opts)
    login(page, server, username, wait_for=wait_for)
    return context, page


def open_image(page, image_id: int) -> None:
    page.evaluate("id => window.__pb.openImage(id)", image_id)
    page.wait_for_selector(f'.pb-app[data-drawn="{image_id}"]')


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    """Image pixels to the page's screen coordinates, through the canvas's SVG transform."""
    return tuple(
        page.evaluate(
            """([x, y]) => { const svg = document.querySelector('.pb-svg'); const p = svg.createSVGPoint();
        p.x = x; p.y = y; const q = p.matrixTransform(svg.getScreenCTM()); return [q.x, q.y]; }""",
            [x, y],
        )
    )


def draw(page, pts, tool: str = "n") -> None:
    """Pick a drawing tool by its key (n: polygon, h: hole, m: another part), click the
    points (image pixels) and finish with Enter."""
    page.keyboard.press(tool)
    for x, y in pts:
        page.mouse.click(*to_screen(page, x, y))
    page.keyboard.press("Enter")


def live_annotations(image_id: int) -> list[dict]:
    """The photo's annotations as the database holds them now."""
    from db.session import session_scope
    from services.labelling.readers import annotation_dicts

    with session_scope() as s:
        return annotation_dicts(s, image_id)
