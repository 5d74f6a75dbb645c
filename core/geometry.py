"""Polygon and mask geometry in original image pixels.

Coordinates are ``(x, y)`` floats with the origin at the top-left corner of the top-left
pixel, so the centre of pixel ``(col, row)`` is ``(col + 0.5, row + 0.5)``. A *ring* is an
``(K, 2)`` float64 array; a :class:`Polygon` is an exterior ring with optional hole rings;
a :class:`Shape` is one or more polygons (a multi-part instance). Masks are ``(H, W)`` bool.

Rasterisation is pure numpy and follows pycocotools' rule exactly. Tracing masks back to
polygons uses OpenCV, imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


class GeometryError(ValueError):
    """A polygon that cannot describe a region (too few points, NaN, zero area...)."""


def as_ring(points: object, *, where: str = "polygon") -> np.ndarray:
    """Validate ``points`` (``[[x, y], ...]`` or a flat ``[x0, y0, x1, y1, ...]``) as a ring."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1:
        if arr.size % 2:
            raise GeometryError(
                f"{where}: a flat coordinate list needs an even length, got {arr.size}"
            )
        arr = arr.reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise GeometryError(f"{where}: expected points shaped (K, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise GeometryError(f"{where}: coordinates must be finite numbers (found NaN or infinity)")
    if len(arr) > 1 and np.array_equal(arr[0], arr[-1]):
        arr = arr[:-1]  # closed rings repeat the first point; we store them open
    if len(arr) < 3:
        raise GeometryError(f"{where}: a polygon needs at least 3 points, got {len(arr)}")
    return arr


def ring_area(ring: np.ndarray) -> float:
    """Unsigned shoelace area of a ring."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class Polygon:
    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = field(default=())

    @property
    def area(self) -> float:
        return max(0.0, ring_area(self.exterior) - sum(ring_area(h) for h in self.holes))

    def rings(self) -> tuple[np.ndarray, ...]:
        return (self.exterior, *self.holes)

    def translated(self, dx: float, dy: float) -> Polygon:
        d = np.array([dx, dy])
        return Polygon(self.exterior + d, tuple(h + d for h in self.holes))

    def scaled(self, sx: float, sy: float) -> Polygon:
        s = np.array([sx, sy])
        return Polygon(self.exterior * s, tuple(h * s for h in self.holes))


@dataclass(frozen=True)
class Shape:
    """One instance's region: one or more polygons, each with holes."""

    polygons: tuple[Polygon, ...]

    def __post_init__(self) -> None:
        if not self.polygons:
            raise GeometryError("a shape needs at least one polygon")

    # -- constructors ----------------------------------------------------------
    @classmethod
    def from_ring(cls, points: object) -> Shape:
        return cls((Polygon(as_ring(points)),))

    @classmethod
    def from_rings(cls, rings: Iterable[object]) -> Shape:
        """Several exteriors without holes (the COCO polygon list)."""
        return cls(tuple(Polygon(as_ring(r, where=f"part {i + 1}")) for i, r in enumerate(rings)))

    @classmethod
    def from_box(cls, x0: float, y0: float, x1: float, y1: float) -> Shape:
        return cls.from_ring([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])

    @classmethod
    def from_json(cls, data: object, *, trusted: bool = False) -> Shape:
        """Parse ``[{"exterior": [[x, y], ...], "holes": [[[x, y], ...], ...]}, ...]``.

        ``trusted`` skips validation, for geometry the store already validated on save.
        """
        if trusted:
            return cls(
                tuple(
                    Polygon(
                        np.asarray(p["exterior"], dtype=np.float64),
                        tuple(np.asarray(h, dtype=np.float64) for h in p.get("holes") or ()),
                    )
                    for p in data  # type: ignore[union-attr]
                )
            )
        if not isinstance(data, list) or not data:
            raise GeometryError("geometry must be a non-empty list of polygons")
        polys = []
        for i, p in enumerate(data):
            if not isinstance(p, dict) or "exterior" not in p:
                raise GeometryError(f"polygon {i + 1}: expected an object with 'exterior'")
            holes = tuple(
                as_ring(h, where=f"polygon {i + 1}, hole {j + 1}")
                for j, h in enumerate(p.get("holes") or [])
            )
            polys.append(Polygon(as_ring(p["exterior"], where=f"polygon {i + 1}"), holes))
        return cls(tuple(polys))

    def to_json(self, ndigits: int = 2, *, arrays: bool = False) -> list[dict]:
        """The JSON form, coordinates rounded to ``ndigits``. With ``arrays`` the rings stay
        numpy arrays, for writers that serialise numpy themselves (orjson in bulk imports)."""

        def r(a: np.ndarray):
            rounded = a.round(ndigits)
            return rounded if arrays else rounded.tolist()

        return [
            {"exterior": r(p.exterior), "holes": [r(h) for h in p.holes]} for p in self.polygons
        ]

    # -- measures --------------------------------------------------------------
    @property
    def area(self) -> float:
        return sum(p.area for p in self.polygons)

    @property
    def bbox(self) -> np.ndarray:
        """``[x0, y0, x1, y1]`` float64."""
        polys = self.polygons
        pts = polys[0].exterior if len(polys) == 1 else np.concatenate([p.exterior for p in polys])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float64)

    @property
    def has_holes(self) -> bool:
        for p in self.polygons:
            if p.holes:
                return True
        return False

    @property
    def num_vertices(self) -> int:
        return sum(len(r) for p in self.polygons for r in p.rings())

    def translated(self, dx: float, dy: float) -> Shape:
        return Shape(tuple(p.translated(dx, dy) for p in self.polygons))

    def scaled(self, sx: float, sy: float | None = None) -> Shape:
        return Shape(tuple(p.scaled(sx, sx if sy is None else sy) for p in self.polygons))

    def to_mask(self, height: int, width: int) -> np.ndarray:
        return shape_to_mask(self, height, width)

    def almost_equal(self, other: Shape, atol: float = 1e-6) -> bool:
        if len(self.polygons) != len(other.polygons):
            return False
        for a, b in zip(self.polygons, other.polygons, strict=True):
            if len(a.holes) != len(b.holes):
                return False
            for ra, rb in zip(a.rings(), b.rings(), strict=True):
                if ra.shape != rb.shape or not np.allclose(ra, rb, atol=atol):
                    return False
        return True


# -- rasterisation -------------------------------------------------------------


def ring_to_mask(ring: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise one ring exactly as pycocotools does (``rleFrPoly`` in ``maskApi.c``).

    Using COCO's own rule means our masks, our metrics and ``COCOeval`` agree pixel for
    pixel. It samples each pixel near its centre on a 5x grid; vertices traced by
    :func:`mask_to_shape` rasterise back to the same mask.
    """
    scale = 5.0
    x = np.trunc(scale * ring[:, 0] + 0.5).astype(np.int64)
    y = np.trunc(scale * ring[:, 1] + 0.5).astype(np.int64)
    xs, ys = x, y
    xe, ye = np.roll(x, -1), np.roll(y, -1)
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    major_x = dx >= dy
    flip = (major_x & (xs > xe)) | (~major_x & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    length = np.where(major_x, dx, dy)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(major_x, (ye - ys) / np.maximum(dx, 1), (xe - xs) / np.maximum(dy, 1))
    # Walk every edge in steps of one grid cell along its major axis.
    n = length + 1
    e = np.repeat(np.arange(len(n)), n)
    d = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    t = np.where(flip[e], length[e] - d, d)
    mx = major_x[e]
    stepped = np.trunc(np.where(mx, ys[e], xs[e]) + slope[e] * t + 0.5).astype(np.int64)
    u = np.where(mx, t + xs[e], stepped)
    v = np.where(mx, stepped, t + ys[e])
    # Where the boundary crosses a column centre, record the first row inside.
    moved = u[1:] != u[:-1]
    uj, uprev = u[1:][moved], u[:-1][moved]
    vj, vprev = v[1:][moved], v[:-1][moved]
    xd = (np.where(uj < uprev, uj, uj - 1) + 0.5) / scale - 0.5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= width - 1)
    yd = np.ceil(np.clip((np.minimum(vj, vprev) + 0.5) / scale - 0.5, 0, height))
    toggles = xd[keep].astype(np.int64) * height + yd[keep].astype(np.int64)
    flat = np.zeros(height * width + 1, dtype=np.int32)
    np.add.at(flat, toggles, 1)
    return (np.cumsum(flat)[: height * width] % 2).astype(bool).reshape(width, height).T


def rings_to_mask(rings: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Even-odd combination of rings: an exterior with its holes."""
    mask = np.zeros((height, width), dtype=bool)
    for ring in rings:
        mask ^= ring_to_mask(ring, height, width)
    return mask


def shape_to_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """Rasterise a shape: each polygon minus its holes, polygons united."""
    mask = np.zeros((height, width), dtype=bool)
    for poly in shape.polygons:
        mask |= rings_to_mask(poly.rings(), height, width)
    return mask


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes, shaped ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# -- tracing -------------------------------------------------------------------


def simplify_ring(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker with ``tolerance`` in pixels; never fewer than 3 points."""
    if tolerance <= 0 or len(ring) <= 3:
        return ring
    import cv2

    approx = cv2.approxPolyDP(ring.astype(np.float32).reshape(-1, 1, 2), tolerance, True)
    approx = approx.reshape(-1, 2).astype(np.float64)
    return approx if len(approx) >= 3 else ring


def mask_to_shape(
    mask: np.ndarray, *, tolerance: float = 1.0, min_area: float = 4.0
) -> Shape | None:
    """Trace a bool mask into a shape, keeping holes and separate parts.

    Returns None for an empty or degenerate mask (no part reaches ``min_area`` pixels).
    Vertices lie on pixel corners, so ``shape_to_mask`` of the result reproduces the mask.
    """
    import cv2

    m = np.asarray(mask, dtype=np.uint8)
    if m.ndim != 2 or not m.any():
        return None
    # Trace at twice the resolution: OpenCV's contours run through the centres of boundary
    # pixels, which at 2x lie a quarter pixel inside the original pixel edges, so the
    # polygon rasterises (at pixel centres) back to exactly the same mask.
    m = np.ascontiguousarray(np.repeat(np.repeat(m, 2, axis=0), 2, axis=1))
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return None
    hierarchy = hierarchy[0]
    polys = []
    for i, cnt in enumerate(contours):
        if hierarchy[i][3] != -1:  # holes go with their parent
            continue
        ext = _ring_of(cnt, tolerance, min_area)
        if ext is None:
            continue
        holes = []
        child = hierarchy[i][2]
        while child != -1:
            hole = _ring_of(contours[child], tolerance, min_area)
            if hole is not None:
                holes.append(hole)
            child = hierarchy[child][0]
        polys.append(Polygon(ext, tuple(holes)))
    if not polys:
        return None
    polys.sort(key=lambda p: -p.area)
    return Shape(tuple(polys))


def _ring_of(cnt: np.ndarray, tolerance: float, min_area: float) -> np.ndarray | None:
    """The simplified ring of a contour, None when degenerate or under ``min_area``."""
    if _too_small(cnt, min_area):
        return None
    ring = _contour_to_ring(cnt, tolerance)
    return ring if ring is not None and ring_area(ring) >= min_area else None


def _too_small(cnt: np.ndarray, min_area: float) -> bool:
    """Whether no ring made of this contour's points can reach ``min_area``: simplification
    keeps a subset of the points, so the area is at most that of their bounding box. A cheap
    exact test that spares the thousands of specks of a noisy mask the Python path."""
    import cv2

    _, _, w, h = cv2.boundingRect(cnt)
    return (w - 1) * (h - 1) / 4.0 < min_area  # 2x contour pixels -> original pixels


def _contour_to_ring(cnt: np.ndarray, tolerance: float) -> np.ndarray | None:
    pts = (cnt.reshape(-1, 2).astype(np.float64) + 0.5) / 2.0  # back to original pixels
    if len(pts) < 3:
        return None
    pts = simplify_ring(pts, tolerance)
    return pts if len(pts) >= 3 else None


def masks_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, H, W)`` and ``(M, H, W)`` bool masks."""
    af = a.reshape(len(a), -1).astype(np.float32)
    bf = b.reshape(len(b), -1).astype(np.float32)
    inter = af @ bf.T
    union = af.sum(1)[:, None] + bf.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def ellipse_ring(
    cx: float, cy: float, rx: float, ry: float, theta: float = 0.0, n: int = 32
) -> np.ndarray:
    """A polygon approximating an ellipse (VIA's circle and ellipse shapes)."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(theta), math.sin(theta)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


# -- fitting a shape to its image ------------------------------------------------


def _clip_ring_half(ring: np.ndarray, axis: int, bound: float, keep_above: bool) -> np.ndarray:
    """One Sutherland-Hodgman pass: the part of ``ring`` on one side of a line."""
    if not len(ring):
        return ring
    nxt = np.roll(ring, -1, axis=0)
    a, b = ring[:, axis], nxt[:, axis]
    inside_a = a >= bound if keep_above else a <= bound
    inside_b = b >= bound if keep_above else b <= bound
    crosses = inside_a != inside_b
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(crosses, (bound - a) / np.where(crosses, b - a, 1.0), 0.0)
    crossing = ring + t[:, None] * (nxt - ring)
    crossing[:, axis] = bound  # exact on the line, whatever the rounding
    points = np.stack([ring, crossing], axis=1).reshape(-1, 2)
    keep = np.stack([inside_a, crosses], axis=1).reshape(-1)
    return points[keep]


def clip_ring(ring: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray | None:
    """The part of ``ring`` inside the box ``[x0, x1] x [y0, y1]``, None when nothing is left.

    Sutherland-Hodgman: exact for any simple ring (a concave ring cut in several pieces
    comes back as one ring joined along the box edge, which has the same even-odd area).
    """
    out = ring
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        out = _clip_ring_half(out, axis, bound, keep_above)
    return out if len(out) >= 3 and _shoelace(out) > 0 else None


def clip_shape(shape: Shape, x0: float, y0: float, x1: float, y1: float) -> Shape | None:
    """The part of ``shape`` inside the box, None when nothing with an area is left."""
    polys = []
    for p in shape.polygons:
        ext = clip_ring(p.exterior, x0, y0, x1, y1)
        if ext is None:
            continue
        holes = (clip_ring(h, x0, y0, x1, y1) for h in p.holes)
        polys.append(Polygon(ext, tuple(h for h in holes if h is not None)))
    return Shape(tuple(polys)) if polys else None


def _shoelace(ring: np.ndarray) -> float:
    """:func:`ring_area` without ``np.roll``, which costs more than the sum on small rings."""
    x, y = ring[:, 0], ring[:, 1]
    twice = x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]
    return 0.5 * abs(float(twice))


def _stored_ring_ok(ring: np.ndarray) -> bool:
    """What ``as_ring`` accepts: finite, and 3 points once a repeated first point is dropped."""
    if not np.isfinite(ring).all():
        return False
    n = len(ring)
    if n > 1 and ring[0, 0] == ring[-1, 0] and ring[0, 1] == ring[-1, 1]:
        n -= 1
    return n >= 3


def image_reach(width: float, height: float) -> tuple[float, float, float, float]:
    """``[x0, y0, x1, y1]``: the image grown on every side by half its longer side. A stored
    coordinate lies inside it: a polygon may reach past the photo's edge, where a drag ends,
    but a vertex beyond it is a slip or a bad number (the canvas's check uses the same box)."""
    slack = 0.5 * max(width, height)
    return -slack, -slack, width + slack, height + slack


def ring_extent(shape: Shape) -> np.ndarray:
    """``[x0, y0, x1, y1]`` over every ring, holes too (``Shape.bbox`` reads the exteriors
    only; a hole stored far outside its exterior must not escape the bounds)."""
    pts = np.concatenate([r for p in shape.polygons for r in p.rings()])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float64)


def reach_of(shape: Shape, width: int, height: int) -> tuple[bool, bool]:
    """``(wholly, partly)``: whether ``shape`` (every ring, holes too) lies wholly beyond
    :func:`image_reach` of a ``width`` x ``height`` image, and whether it reaches beyond it."""
    x0, y0, x1, y1 = ring_extent(shape)
    lx0, ly0, lx1, ly1 = image_reach(width, height)
    wholly = bool(x1 < lx0 or y1 < ly0 or x0 > lx1 or y0 > ly1)
    partly = bool(x0 < lx0 or y0 < ly0 or x1 > lx1 or y1 > ly1)
    return wholly, partly


def geometry_counts(geometry: object) -> tuple[int, int]:
    """``(rings, points)`` of a geometry in its JSON form (rings as lists or arrays), counted
    without parsing it: each polygon's outline and holes, and their points (a flat
    ``[x0, y0, ...]`` ring has half as many). What is not shaped like a list of polygons counts
    as nothing, for the rules to name; so a size limit can be checked before costly work."""
    if not isinstance(geometry, list):
        return 0, 0
    rings = points = 0
    for poly in geometry:
        if not isinstance(poly, dict):
            continue
        holes = poly.get("holes")
        for ring in (poly.get("exterior"), *(holes if isinstance(holes, list) else ())):
            if isinstance(ring, np.ndarray):
                rings, points = rings + 1, points + len(ring)
            elif isinstance(ring, list):
                flat = bool(ring) and not isinstance(ring[0], list | tuple)
                rings, points = rings + 1, points + (len(ring) // 2 if flat else len(ring))
    return rings, points


def check_vertex_limit(shape: Shape, max_vertices: int) -> None:
    """Raise GeometryError when ``shape`` has more than ``max_vertices`` points: in one polygon
    (outline and holes together), or in all its parts together, so that splitting an outline
    into many small parts does not escape the limit."""
    total = 0
    for i, p in enumerate(shape.polygons):
        n = sum(len(r) for r in p.rings())
        if n > max_vertices:
            raise GeometryError(
                f"polygon {i + 1} has {n:,} points, more than the limit of {max_vertices:,}; "
                f"simplify it, or raise the limit ({_vertex_setting()})"
            )
        total += n
    if total > max_vertices:
        raise GeometryError(
            f"its {len(shape.polygons):,} parts have {total:,} points together, more than the "
            f"limit of {max_vertices:,}; simplify them, or raise the limit ({_vertex_setting()})"
        )


def _vertex_setting() -> str:
    from core.config import env_name  # pydantic, only on the way to an error

    return f"setting {env_name('max_vertices_per_polygon')}"


def fit_to_image(
    shape: Shape, width: int, height: int, *, max_vertices: int, ndigits: int = 2
) -> tuple[Shape, bool]:
    """``shape`` as the store keeps it (rounded to ``ndigits``), checked against its image.

    The rules are the save path's (``services.labelling.validation.normalise_annotation``), applied
    to the rounded coordinates that will be stored, so the stored shape saves again as it
    is: finite rings of 3 or more points, a positive area, and not far outside the image
    (beyond half its longer side). A shape that is partly that far out is clipped to the
    image instead of refused. Returns the shape and whether it was clipped.

    Raises:
        GeometryError: the reason the shape cannot be stored.
    """
    check_vertex_limit(shape, max_vertices)
    shape = Shape(
        tuple(
            Polygon(p.exterior.round(ndigits), tuple(h.round(ndigits) for h in p.holes))
            for p in shape.polygons
        )
    )
    for i, p in enumerate(shape.polygons):
        if not all(_stored_ring_ok(r) for r in p.rings()):
            raise GeometryError(
                f"polygon {i + 1} needs at least 3 distinct points with finite coordinates"
            )
    wholly, clipped = reach_of(shape, width, height)
    if wholly:
        raise GeometryError(f"the polygon lies outside the {width}x{height} image")
    if clipped:
        cut = clip_shape(shape, 0.0, 0.0, float(width), float(height))
        if cut is None:
            raise GeometryError(f"the polygon lies outside the {width}x{height} image")
        return fit_to_image(cut, width, height, max_vertices=max_vertices, ndigits=ndigits)[0], True
    area = sum(
        max(0.0, _shoelace(p.exterior) - sum(_shoelace(h) for h in p.holes)) for p in shape.polygons
    )
    if not math.isfinite(area) or area <= 0:
        raise GeometryError("the polygon has zero area")
    return shape, False


# -- what a save accepts, and repairing a self-crossing outline ----------------------------------
# The canvas (annotator/static/canvas/geometry.js: check, repair) implements both functions
# below operation for operation, so the browser refuses and repairs exactly what the server
# does; tests/data/geometry_cases.json holds the cases both sides must agree on.


def _area_units(ring: np.ndarray, ndigits: int) -> int:
    """Twice the ring's unsigned area in units of ``10**-ndigits`` pixels squared, as an exact
    integer: the coordinates are rounded to ``ndigits`` already, so scaling them makes
    integers, and the shoelace sum of integers has no rounding error to disagree about (taken
    from the first point, so the sums stay far below 2**53, where JavaScript's stop being exact)."""
    k = 10.0**ndigits
    xs = [round(float(v) * k) for v in ring[:, 0]]
    ys = [round(float(v) * k) for v in ring[:, 1]]
    xs = [x - xs[0] for x in xs]
    ys = [y - ys[0] for y in ys]
    s, j = 0, len(xs) - 1
    for i in range(len(xs)):
        s += xs[j] * ys[i] - xs[i] * ys[j]
        j = i
    return abs(s)


def check_geometry(
    data: object, width: int, height: int, *, max_vertices: int, ndigits: int = 2
) -> Shape:
    """The rules a saved annotation's geometry must meet; returns the shape as stored
    (coordinates rounded to ``ndigits``).

    In order: a list of polygons with finite rings of 3 or more points (:meth:`Shape.from_json`),
    at most ``max_vertices`` points per polygon and in all parts together, then on the rounded
    coordinates that will be stored (so a stored shape always saves again): 3 or more points
    per ring, not wholly outside :func:`image_reach` (the image grown by half its longer
    side), and a positive area, counted exactly. A shape that reaches beyond
    :func:`image_reach` is clipped to the image first, as imports clip it (:func:`fit_to_image`).

    Raises:
        GeometryError: the first rule broken, as a sentence (the canvas shows the same one).
    """
    shape = Shape.from_json(data)
    check_vertex_limit(shape, max_vertices)
    shape = Shape.from_json(shape.to_json(ndigits))
    wholly, partly = reach_of(shape, width, height)
    if wholly:
        raise GeometryError(f"polygon lies outside the {width}x{height} image")
    if partly:
        # A vertex far off (a slip, or a number like 1e300) would poison areas, boxes and
        # masks downstream; the part inside the photo is what was meant.
        cut = _clip_to_image(shape, width, height)
        if cut is None:
            raise GeometryError(f"polygon lies outside the {width}x{height} image")
        shape = Shape.from_json(cut.to_json(ndigits))
        check_vertex_limit(shape, max_vertices)
    total = 0
    for p in shape.polygons:
        total += max(
            0, _area_units(p.exterior, ndigits) - sum(_area_units(h, ndigits) for h in p.holes)
        )
    if total <= 0:
        raise GeometryError("polygon has zero area")
    return shape


def _clip_to_image(shape: Shape, width: int, height: int) -> Shape | None:
    """Every ring of ``shape`` clipped to the image (Sutherland-Hodgman, :func:`clip_ring`
    without its area test: the caller counts the area exactly, as the canvas does, which
    repeats these steps float for float); a ring left with fewer than 3 points is dropped, a
    polygon with its outline. None when no polygon is left."""
    box = ((0, 0.0, True), (0, float(width), False), (1, 0.0, True), (1, float(height), False))

    def clip(ring: np.ndarray) -> np.ndarray | None:
        for axis, bound, keep_above in box:
            ring = _clip_ring_half(ring, axis, bound, keep_above)
        return ring if len(ring) >= 3 else None

    polys = []
    for p in shape.polygons:
        ext = clip(p.exterior)
        if ext is not None:
            holes = (clip(h) for h in p.holes)
            polys.append(Polygon(ext, tuple(h for h in holes if h is not None)))
    return Shape(tuple(polys)) if polys else None


def _orient(p: list[float], q: list[float], r: list[float]) -> float:
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def _crossing(a, b, c, d) -> list[float] | None:
    """Where segments a-b and c-d cross at a point inside both (rounded to 0.01 px), else None
    (touching, sharing an end or overlapping along a line is no crossing)."""
    o1, o2, o3, o4 = _orient(a, b, c), _orient(a, b, d), _orient(c, d, a), _orient(c, d, b)
    if not ((o1 > 0 > o2 or o1 < 0 < o2) and (o3 > 0 > o4 or o3 < 0 < o4)):
        return None
    t = o3 / (o3 - o4)
    # Rounded as the store rounds (numpy's round half to even), so it is stored as computed.
    x, y = np.round([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])], 2)
    return [float(x), float(y)]


def split_ring(ring: Sequence[Sequence[float]]) -> list[list[list[float]]]:
    """A ring that crosses itself, cut at its crossings into rings that do not: a bow-tie
    becomes its two triangles. A simple ring comes back alone and unchanged.

    The first crossing (edges i < j, in order) splits the ring at the crossing point into the
    loop through edges i+1..j and the loop through the rest; each loop is split again. Each
    loop has fewer points than the ring, so it ends. Plain floats throughout, in the order
    geometry.js computes them, so both give the same points.
    """
    pts = [[float(q[0]), float(q[1])] for q in ring]
    n = len(pts)
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the edge before edge 0: they share a point
            p = _crossing(a, b, pts[j], pts[(j + 1) % n])
            if p is not None:
                return split_ring([p, *pts[i + 1 : j + 1]]) + split_ring(
                    [p, *pts[j + 1 :], *pts[: i + 1]]
                )
    return [pts]


def _in_ring(pt: Sequence[float], ring: Sequence[Sequence[float]]) -> bool:
    """Even-odd ray crossing, as geometry.js's inRing."""
    inside, j = False, len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > pt[1]) != (yj > pt[1]) and pt[0] < (xj - xi) * (pt[1] - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def repair_geometry(data: list[dict], *, max_points: int = 2_000) -> list[dict]:
    """The JSON geometry with every self-crossing ring split (:func:`split_ring`): an outline
    into several polygons, a hole into several holes. Each hole goes with the first new
    polygon that holds its first point. Rings of more than ``max_points`` points are left as
    they are (the search is quadratic). Expects the shape :meth:`Shape.from_json` accepts."""

    def split(ring: list) -> list:
        pairs = all(isinstance(q, list | tuple) for q in ring)
        return split_ring(ring) if pairs and 3 <= len(ring) <= max_points else [ring]

    out: list[dict] = []
    for p in data:
        parts = split(p["exterior"])
        holes: list = []
        for h in p.get("holes") or []:
            holes.extend(split(h))
        if len(parts) == 1:
            out.append({"exterior": parts[0], "holes": holes})
            continue
        polys = [{"exterior": r, "holes": []} for r in parts]
        for h in holes:
            home = next((q for q in polys if _in_ring(h[0], q["exterior"])), polys[0])
            home["holes"].append(h)
        out.extend(polys)
    return out
