"""Sharp zoom's region endpoint (``GET /api/images/{id}/region``, ``services.labelling.tiles``).

A real seeded workspace over the REST API: a signed-in session is needed, an image of another
project answers 404, regions that leave the photo or exceed the output limit answer 422 with a
sentence, the pixels match a PIL crop of the original, and a repeated region is served from
the cache without decoding the photo again.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import api_client, synthetic_photo
from PIL import Image as PILImage
from sqlmodel import select

from services.labelling import tiles


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from db.models import Image
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_folder

    tmp_path = tmp_path_factory.mktemp("tiles")
    with pytest.MonkeyPatch.context() as mp:  # conftest's cheap hashes are per test
        mp.setattr("services.accounts.users._scrypt_n_for_tests", 2**10)
        client, seeded, login = api_client(tmp_path / "data", n_synthetic=1)
    # One photo of another project in the same database.
    other_dir = tmp_path / "other"
    synthetic_photo(other_dir / "other.jpg", seed=5)
    with session_scope() as s:
        other = get_or_create_project(s, "other")
        import_folder(s, other, other_dir)
        other_id = s.exec(select(Image.id).where(Image.project_id == other.id)).one()
        img = s.get(Image, seeded.image_ids[0])
        path = Path(img.path)
        if not path.is_absolute():
            path = seeded.data_dir / path
    tiles.clear_caches()
    return client, login, seeded.image_ids[0], other_id, path


def _decode(content: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(content)).convert("RGB")).astype(np.int16)


def test_region_needs_a_session_and_the_served_project(world) -> None:
    client, login, image_id, other_id, _ = world
    q = "x=0&y=0&w=64&h=64"
    assert client.get(f"/api/images/{image_id}/region?{q}").status_code == 401
    h = login("annotator")
    assert client.get(f"/api/images/{image_id}/region?{q}", headers=h).status_code == 200
    r = client.get(f"/api/images/{other_id}/region?{q}", headers=h)
    assert r.status_code == 404, r.text
    assert client.get(f"/api/images/999999/region?{q}", headers=h).status_code == 404


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("x=600&y=0&w=100&h=10", "leaves the 640x480 photo"),  # past the right edge
        ("x=0&y=470&w=10&h=11", "leaves the 640x480 photo"),  # past the bottom edge
        ("x=0&y=0&w=0&h=10", "w"),  # empty (FastAPI's own check)
        ("x=-1&y=0&w=10&h=10", "x"),
        ("x=0&y=0&w=10&h=10&scale=1.5", "scale"),
        ("x=0&y=0&w=640&h=480&scale=0", "scale"),
        ("x=0&y=0&w=640&h=480", "exceeds the limit of 100000"),  # 307,200 output pixels
    ],
)
def test_region_bounds_are_checked(world, monkeypatch, query: str, words: str) -> None:
    client, login, image_id, *_ = world
    from core.config import get_settings

    monkeypatch.setattr(get_settings(), "region_max_output_pixels", 100_000)
    r = client.get(f"/api/images/{image_id}/region?{query}", headers=login("annotator"))
    assert r.status_code == 422, r.text
    assert words in r.text, r.text


def test_region_pixels_match_the_original_and_repeat_from_the_cache(world) -> None:
    client, login, image_id, _, path = world
    h = login("annotator")
    tiles.clear_caches()
    original = np.asarray(PILImage.open(path).convert("RGB")).astype(np.int16)
    x, y, w, hh = 101, 37, 250, 180
    r = client.get(f"/api/images/{image_id}/region?x={x}&y={y}&w={w}&h={hh}", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-region-cache"] == "miss"
    got = _decode(r.content)
    assert got.shape == (hh, w, 3)
    want = original[y : y + hh, x : x + w]
    # JPEG at quality 90 re-encodes, so pixels differ a little; a shifted crop differs a lot.
    assert np.abs(got - want).mean() < 3.0
    assert (
        np.abs(got - original[y + 40 : y + 40 + hh, x : x + w]).mean()
        > 3 * np.abs(got - want).mean()
    )

    # The same region again: from the cache, no second decode; a nearby one: no decode either.
    before = tiles.cache_stats()
    r2 = client.get(f"/api/images/{image_id}/region?x={x}&y={y}&w={w}&h={hh}", headers=h)
    assert r2.headers["x-region-cache"] == "hit" and r2.content == r.content
    r3 = client.get(f"/api/images/{image_id}/region?x=0&y=0&w=64&h=64", headers=h)
    assert r3.headers["x-region-cache"] == "miss"
    after = tiles.cache_stats()
    assert after["hits"] == before["hits"] + 1 and after["decodes"] == before["decodes"]
    # The browser's own cache: an unchanged region answers 304.
    r4 = client.get(
        f"/api/images/{image_id}/region?x={x}&y={y}&w={w}&h={hh}",
        headers={**h, "If-None-Match": r.headers["etag"]},
    )
    assert r4.status_code == 304


def test_a_scaled_region_matches_a_resized_crop(world) -> None:
    client, login, image_id, _, path = world
    r = client.get(
        f"/api/images/{image_id}/region?x=0&y=0&w=640&h=480&scale=0.25",
        headers=login("annotator"),
    )
    assert r.status_code == 200, r.text
    got = _decode(r.content)
    assert got.shape == (120, 160, 3)
    want = np.asarray(
        PILImage.open(path).convert("RGB").resize((160, 120), PILImage.Resampling.LANCZOS)
    ).astype(np.int16)
    assert np.abs(got - want).mean() < 4.0


@pytest.mark.parametrize(
    ("scale", "reduce"), [(1, 1), (0.6, 1), (0.5, 2), (0.3, 2), (0.25, 4), (0.01, 8)]
)
def test_the_jpeg_decode_reduction_never_goes_below_the_asked_scale(
    scale: float, reduce: int
) -> None:
    assert tiles._reduction(scale) == reduce


def test_the_display_copy_decodes_a_landscape_photo_at_reduced_scale(
    tmp_path: Path, monkeypatch
) -> None:
    """The screen-sized copy (api/files.downscale_jpeg) lets libjpeg decode a 12-MP photo at
    half size; a square size hint used to keep a landscape photo at full size (4x the work)."""
    from PIL import JpegImagePlugin

    from api.files import downscale_jpeg

    sizes: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = draft(self, mode, size)
        sizes.append(self.size)
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    path = tmp_path / "wide.jpg"
    PILImage.new("RGB", (4000, 3000), (90, 120, 30)).save(path)
    out = PILImage.open(io.BytesIO(downscale_jpeg(path, 1600)))
    assert out.size == (1600, 1200)
    assert sizes == [(2000, 1500)]
