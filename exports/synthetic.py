"""Synthetic labelled records for round-trip tests and benchmarks (no image files).

``tiny_records`` gives a handful of hand-made shapes that stress every format: a polygon
with a hole, a two-part instance, a 3-point polygon, attributes and a prediction score.
``random_records`` scales to any number of images and polygons, reproducibly.
"""

from __future__ import annotations

import hashlib

import numpy as np

from core.geometry import Polygon, Shape
from core.instances import Instances
from core.records import ImageRecord
from core.taxonomy import Taxonomy


def _fake_sha(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"synthetic-{salt}{i}".encode()).hexdigest()


def tiny_records(taxonomy: Taxonomy) -> list[ImageRecord]:
    """Three small images (200 x 160 px) with awkward shapes; coordinates in pixels."""
    square_with_hole = Shape(
        (
            Polygon(
                np.array([[20.0, 20.0], [120.0, 20.0], [120.0, 120.0], [20.0, 120.0]]),
                (np.array([[50.0, 50.0], [90.0, 50.0], [90.0, 90.0], [50.0, 90.0]]),),
            ),
        )
    )
    two_parts = Shape.from_rings(
        [
            [[130.5, 10.25], [190.0, 10.0], [190.0, 60.0], [130.0, 60.0]],
            [[140.0, 90.0], [185.0, 95.0], [160.0, 150.0]],
        ]
    )
    triangle = Shape.from_ring([[10.0, 130.0], [60.0, 140.0], [30.0, 155.0]])
    irregular = Shape.from_ring(
        [[60.3, 60.7], [150.9, 40.2], [170.4, 120.8], [110.6, 150.1], [70.2, 110.5], [40.8, 90.3]]
    )
    dent, scratch, hood, wheel = (
        taxonomy.by_name(n).id for n in ("dent", "scratch", "hood", "wheel")
    )
    fakemud = taxonomy.by_name("fakemud").id
    recs = [
        ImageRecord(
            "a.jpg",
            200,
            160,
            Instances(
                [square_with_hole, two_parts, triangle],
                [hood, dent, scratch],
                attributes=[{}, {"severity": "moderate", "occluded": True}, {"severity": "minor"}],
            ),
            split="train",
            sha256=_fake_sha(0, "tiny"),
        ),
        ImageRecord(
            "sub/b.png",
            200,
            160,
            Instances(
                [irregular, triangle],
                [wheel, fakemud],
                attributes=[{}, {"fake_note": "mud splash"}],
            ),
            split="val",
            sha256=_fake_sha(1, "tiny"),
        ),
        ImageRecord(
            "c.jpg", 200, 160, Instances.empty(), split="test", sha256=_fake_sha(2, "tiny")
        ),
    ]
    return recs


def tiny_predictions(taxonomy: Taxonomy) -> list[ImageRecord]:
    """The tiny records again, as model predictions with scores below 1."""
    recs = tiny_records(taxonomy)
    for r in recs:
        n = len(r.instances)
        r.instances.scores = (
            np.linspace(0.9, 0.5, n).astype(np.float32) if n else r.instances.scores
        )
    return recs


def random_records(
    taxonomy: Taxonomy,
    n_images: int,
    n_polygons: int,
    *,
    width: int = 640,
    height: int = 480,
    vertices: tuple[int, int] = (6, 16),
    radius: tuple[float, float] = (8.0, 38.0),
    seed: int = 0,
) -> list[ImageRecord]:
    """``n_images`` records holding ``n_polygons`` star-shaped polygons in total.

    Polygons are spread evenly over images, classes drawn uniformly from the taxonomy,
    vertex counts uniformly from ``vertices`` (inclusive), vertex distances from the centre
    uniformly from ``radius`` (pixels).
    """
    rng = np.random.default_rng(seed)
    class_ids = np.array([c.id for c in taxonomy])
    per_image = np.full(n_images, n_polygons // n_images)
    per_image[: n_polygons % n_images] += 1
    records = []
    for i in range(n_images):
        k = int(per_image[i])
        shapes = []
        for _ in range(k):
            nv = int(rng.integers(vertices[0], vertices[1] + 1))
            cx, cy = (
                rng.uniform(radius[1], width - radius[1]),
                rng.uniform(radius[1], height - radius[1]),
            )
            r = rng.uniform(radius[0], radius[1], nv)
            angle = np.sort(rng.uniform(0, 2 * np.pi, nv))
            ring = np.stack([cx + r * np.cos(angle), cy + r * np.sin(angle)], axis=1)
            shapes.append(Shape((Polygon(np.round(ring, 2)),)))
        inst = Instances(shapes, rng.choice(class_ids, k)) if k else Instances.empty()
        records.append(
            ImageRecord(f"img_{i:06d}.jpg", width, height, inst, sha256=_fake_sha(i, f"s{seed}-"))
        )
    return records
