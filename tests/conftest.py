"""Fixtures shared by every test module."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from durability_helpers import fresh_postgres_database as _fresh_postgres_database

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Real public car photos with polygon labels; absent on users' machines.
SHARED_DATASETS = Path(
    os.environ.get("PANELBEATER_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets")
)

requires_datasets = pytest.mark.skipif(
    not SHARED_DATASETS.is_dir(),
    reason=f"real datasets not found at {SHARED_DATASETS} (set PANELBEATER_SHARED_DATASETS)",
)

# The test machines have two cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
# Tests assert the auto-training job a commit queues right after it; the checks' interval
# has its own test (test_autotrain_checks.py).
os.environ.setdefault("PANELBEATER_AUTOTRAIN_CHECK_INTERVAL_S", "0")


#: In CI every dependency, dataset and service is present, so a skip there hides a fault:
#: it fails the run. On a user's machine a missing piece still skips, with its reason.
SKIPS_FAIL = os.environ.get("CI", "").lower() == "true"


def _skip_as_failure(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not (SKIPS_FAIL and report.skipped and not hasattr(report, "wasxfail")):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where nothing may skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_as_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_as_failure(outcome.get_result())


@pytest.fixture(autouse=True, scope="session")
def _queue_autotraining_on_commit():
    """As the app, the CLI and the worker do at start-up (pre-annotating slot photos too)."""
    from jobs.autotrain import listen
    from jobs.slot_predictions import listen as preannotate_slot_photos

    listen()
    preannotate_slot_photos()


@pytest.fixture(scope="module")
def browser(world):
    """Headless chromium for a browser test module, launched once the module's ``world`` (its
    seeded data dir and server) is up."""
    from browser_helpers import launch, require_chromium

    with launch(require_chromium()) as b:
        yield b


@pytest.fixture
def bar_off(monkeypatch):
    """Test models train for seconds from random weights and score next to nothing on
    held-out photos; a test of what follows a promotion (pre-annotation, selection) lowers
    every stage's bar to pre-annotate to 0, here and in the workers it starts."""
    import json

    from core.config import get_settings
    from models.registry import stage_infos

    off = {i.name: 0.0 for i in stage_infos() if i.pre_annotate_minimum is not None}
    monkeypatch.setenv("PANELBEATER_PRE_ANNOTATE_MINIMUM", json.dumps(off))
    monkeypatch.setattr(get_settings(), "pre_annotate_minimum", off)
    return off


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch):
    """scrypt at N=2^17 costs ~0.5 s a hash; tests that create users by the hundred use a
    cheap N (tests/test_accounts.py checks the real one)."""
    monkeypatch.setattr("services.accounts.users._scrypt_n_for_tests", 2**10)


@pytest.fixture
def datasets_dir() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


# -- the store ------------------------------------------------------------------
#: A PostgreSQL server for the db tests (.ci/run starts one on loopback and sets this).
POSTGRES_URL = os.environ.get("PANELBEATER_TEST_POSTGRES_URL", "")


def configure_store(data_dir: Path, database_url: str = "") -> None:
    """Point settings and the engine at a fresh store and migrate it."""
    from core.config import configure
    from db.session import init_db, reset_engine

    configure(data_dir=data_dir, database_url=database_url)
    reset_engine()
    init_db()


@pytest.fixture
def store(tmp_path: Path):
    """A fresh SQLite store in a temporary data dir."""
    from core.config import reset_settings
    from db.session import reset_engine

    configure_store(tmp_path / "data")
    yield tmp_path / "data"
    reset_engine()
    reset_settings()


def _backends() -> list:
    params = [pytest.param("sqlite", id="sqlite")]
    ci = os.environ.get("CI", "").lower() == "true"
    params.append(
        pytest.param(
            "postgres",
            id="postgres",
            marks=pytest.mark.skipif(
                not POSTGRES_URL and not ci,
                reason="no PostgreSQL server: set PANELBEATER_TEST_POSTGRES_URL (.ci/run starts one)",
            ),
        )
    )
    return params


@pytest.fixture(params=_backends())
def any_store(request, tmp_path: Path):
    """A fresh store on SQLite and, where a server is configured, on PostgreSQL."""
    from core.config import reset_settings
    from db.session import reset_engine

    if request.param == "postgres":
        if not POSTGRES_URL:
            pytest.fail(
                "CI=true but PANELBEATER_TEST_POSTGRES_URL is not set: .ci/run must start PostgreSQL"
            )
        configure_store(tmp_path / "data", _fresh_postgres_database(POSTGRES_URL))
    else:
        configure_store(tmp_path / "data")
    yield request.param
    reset_engine()
    reset_settings()


@pytest.fixture
def db_session(store):
    from db.session import session_scope

    with session_scope() as session:
        yield session


@pytest.fixture
def project(db_session):
    from services.accounts.projects import get_or_create_project

    return get_or_create_project(db_session)


# -- real photos, imported and labelled -------------------------------------------


def write_coco_subset(
    data: dict, images: list[dict], path: Path, labelled: list[dict] | None = None
) -> Path:
    """Write a COCO file holding ``images`` of ``data`` and the annotations of ``labelled``
    (all of ``images`` when None)."""
    ids = {im["id"] for im in (images if labelled is None else labelled)}
    sub = {
        "images": images,
        "categories": data["categories"],
        "annotations": [a for a in data["annotations"] if a["image_id"] in ids],
    }
    path.write_text(json.dumps(sub))
    return path


def annotated_subset(annotations: Path, n: int, path: Path) -> Path:
    """Write the first ``n`` images of a COCO file that have annotations, with them."""
    data = json.loads(annotations.read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    keep = [im for im in data["images"] if im["id"] in annotated][:n]
    return write_coco_subset(data, keep, path)


@pytest.fixture
def labelled_project(db_session, project, datasets_dir, tmp_path):
    """Six dsmlr photos imported, labelled; two of them in the held-out split."""
    from sqlmodel import select

    from db.models import Image
    from models.datasets import DSMLR_LABEL_MAP
    from services.data_io.imports import import_coco
    from services.labelling.statuses import set_status

    root = datasets_dir / "car_parts_dsmlr" / "trainingset"
    report = import_coco(
        db_session,
        project,
        annotated_subset(root / "annotations.json", 6, tmp_path / "sub.json"),
        images_dir=root / "JPEGImages",
        label_map={**DSMLR_LABEL_MAP, "_background_": "hood"},
    )
    assert report.images_added == 6
    images = db_session.exec(select(Image).order_by(Image.id)).all()
    for k, im in enumerate(images):
        set_status(db_session, image_id=im.id, status="labelled", author="t")
        im.split = "test" if k >= 4 else "train"
        db_session.add(im)
    db_session.flush()
    return project


def noise_training_set(
    folder: Path,
    labels: list[list[tuple[str, tuple[float, float, float, float]]]],
    *,
    size: tuple[int, int],
    seed: int,
    split: str,
):
    """A TrainingSet of random-noise photos ``car{i}.png`` of ``size`` (H, W) in ``folder``,
    photo ``i`` labelled with ``labels[i]``: ``(taxonomy name, XYXY box in pixels)`` pairs."""
    import numpy as np
    from PIL import Image

    from core.geometry import Shape
    from core.instances import Instances
    from core.records import ImageRecord
    from core.taxonomy import default_taxonomy
    from models.data import TrainingSet

    tax = default_taxonomy()
    rng = np.random.default_rng(seed)
    h, w = size
    recs = []
    for i, photo in enumerate(labels):
        path = folder / f"car{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        inst = Instances(
            shapes=[Shape.from_box(*box) for _, box in photo],
            class_ids=np.asarray([tax.get(name).id for name, _ in photo]),
        )
        recs.append(ImageRecord(str(path), w, h, inst, split))
    return TrainingSet(recs, tax)
