"""A simulated annotator: the actions a person takes to label one photo, starting from what
Panelbeater shows it (the stored predictions) and with the project's click assistance.

The rules, one action each unless said:

- a shown prediction is matched one-to-one to a labelled instance (greedy by mask IoU,
  highest first, pairs under :data:`FIX_IOU` never match);
- **accept** a match of the right class at IoU >= :data:`ACCEPT_IOU`: 1;
- **relabel** a match of the wrong class: 2 (pick the instance, pick the class), whatever
  its IoU; below :data:`ACCEPT_IOU` it is then fixed as well;
- **fix** a match at :data:`FIX_IOU` <= IoU < :data:`ACCEPT_IOU`: corrective clicks, 1 each,
  up to :data:`MAX_CLICKS`, until IoU >= :data:`ACCEPT_IOU`; then the remaining vertices by
  hand (below);
- **delete** a prediction that matches nothing (a false positive): 1;
- **draw** a labelled instance nothing matched: a box (2: two corners), the assistance's
  answer, corrective clicks as for a fix, then the remaining vertices by hand.

How a corrective click is placed (the protocol of interactive-segmentation benchmarks, e.g.
RITM's "number of clicks"): the error region is the symmetric difference of the labelled
mask and the current outline; the click goes on the pixel of its largest connected component
(8-connected) that lies deepest inside it (the largest distance to the component's edge, the
image border counting as an edge), as a positive click when that pixel is missed foreground
and a negative click when it is false foreground. Each click is sent with every earlier click
and with the box: for a draw, the box the person drew (the labelled instance's box); for a
fix, the box of the prediction being fixed. An answer that is worse than the outline the
person already has is not kept (the click is still counted).

"The remaining vertices by hand": the labelled instance's outline simplified by
Douglas-Peucker at :data:`VERTEX_TOLERANCE` pixels (every ring, holes included, in original
photo pixels), and of its vertices those not already on the current outline, 1 action each.
A vertex is on the outline when it lies within :data:`VERTEX_TOLERANCE` pixels of the
outline's edge (plus half a mask pixel, for rasterisation). Placing them makes the outline
the labelled one. So a fix or a draw never costs more than its clicks, its box and the
instance's full vertex count.

**Vertices by hand** (the baseline): the same Douglas-Peucker vertex count of every labelled
instance, as if each were drawn click by click with no help.

Masks are compared at ``scale`` times the photo's size (the assistance's pixels, no larger
than the workspace sends it); vertex counts are in original pixels. Numpy and OpenCV
(imported lazily) only; the assistance is any callable (:data:`Assist`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np

from core.geometry import Shape, masks_iou_matrix, simplify_ring
from core.instances import Instances

#: A match of the right class at this mask IoU or more is accepted as it is.
ACCEPT_IOU = 0.85
#: Below this IoU a prediction matches nothing: it is deleted, and its instance drawn.
FIX_IOU = 0.5
#: Corrective clicks before the rest is placed by hand.
MAX_CLICKS = 5
#: Douglas-Peucker tolerance in pixels of a hand-drawn outline.
VERTEX_TOLERANCE = 1.5
BOX_ACTIONS = 2
RELABEL_ACTIONS = 2


@dataclass(frozen=True)
class Prompt:
    """What the assistance is asked: ``box`` (4,) float xyxy or None, ``points`` (K, 2) float
    xy, ``labels`` (K,) int (1 foreground, 0 background); mask pixels, top-left corner origin."""

    box: np.ndarray | None
    points: np.ndarray
    labels: np.ndarray


#: The assistance: a prompt -> an ``(H, W)`` bool mask in the same pixels, or None (nothing found).
Assist = Callable[[Prompt], "np.ndarray | None"]


@dataclass
class Tally:
    """Actions (and cases) of one photo, or summed over photos (``photos`` counts them).

    Action columns: ``accept``, ``relabel``, ``fix_clicks``, ``fix_vertices``, ``delete``,
    ``draw_box``, ``draw_clicks``, ``draw_vertices``; :attr:`total` is their sum.
    ``by_hand`` is the vertices-by-hand baseline of the same instances. Case counts:
    ``accepted``, ``relabelled``, ``fixed``, ``deleted``, ``drawn`` instances.
    """

    accept: int = 0
    relabel: int = 0
    fix_clicks: int = 0
    fix_vertices: int = 0
    delete: int = 0
    draw_box: int = 0
    draw_clicks: int = 0
    draw_vertices: int = 0
    by_hand: int = 0
    accepted: int = 0
    relabelled: int = 0
    fixed: int = 0
    deleted: int = 0
    drawn: int = 0
    photos: int = 1

    ACTIONS = (
        "accept",
        "relabel",
        "fix_clicks",
        "fix_vertices",
        "delete",
        "draw_box",
        "draw_clicks",
        "draw_vertices",
    )

    @property
    def total(self) -> int:
        return sum(getattr(self, k) for k in self.ACTIONS)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @classmethod
    def zero(cls) -> Tally:
        return cls(photos=0)

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def vertex_count(shape: Shape, tolerance: float = VERTEX_TOLERANCE) -> int:
    """Vertices of ``shape`` drawn by hand: every ring (exteriors and holes) simplified by
    Douglas-Peucker at ``tolerance`` pixels (never fewer than 3 per ring)."""
    return sum(len(simplify_ring(r, tolerance)) for p in shape.polygons for r in p.rings())


def match(
    truth: np.ndarray, shown: np.ndarray, min_iou: float = FIX_IOU
) -> list[tuple[int, int, float]]:
    """One-to-one matches of ``(M, H, W)`` labelled masks and ``(N, H, W)`` shown masks:
    ``(shown index, truth index, IoU)``, greedy from the highest IoU, pairs under ``min_iou``
    left out. Ties go to the lower indices."""
    if not len(truth) or not len(shown):
        return []
    iou = masks_iou_matrix(shown, truth)
    order = np.argsort(-iou, axis=None, kind="stable")
    used_s, used_t, out = set(), set(), []
    for flat in order:
        s, t = divmod(int(flat), iou.shape[1])
        if iou[s, t] < min_iou:
            break
        if s in used_s or t in used_t:
            continue
        used_s.add(s)
        used_t.add(t)
        out.append((s, t, float(iou[s, t])))
    return out


def corrective_click(truth: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Where a person clicks to correct ``current`` towards ``truth`` (both ``(H, W)`` bool):
    ``(xy, label)`` with ``xy`` the centre of the deepest pixel of the largest error region,
    label 1 for missed foreground, 0 for false foreground; None when they agree."""
    import cv2

    error = np.asarray(truth, bool) ^ np.asarray(current, bool)
    if not error.any():
        return None
    n, comp, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = np.pad(comp == biggest, 1).astype(np.uint8)  # the border counts as an edge
    depth = cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return np.array([x + 0.5, y + 0.5]), int(bool(truth[y, x]))


def remaining_vertices(vertices: np.ndarray, current: np.ndarray, tolerance: float) -> int:
    """How many of ``vertices`` ((K, 2) xy, mask pixels) lie farther than ``tolerance`` mask
    pixels from the edge of ``current`` ((H, W) bool): those a person still places by hand."""
    import cv2

    if not len(vertices):
        return 0
    if not current.any():
        return len(vertices)
    c = current.astype(np.uint8)
    edge = c - cv2.erode(
        c, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    dist = cv2.distanceTransform((edge == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    h, w = current.shape
    # the four pixel centres around each vertex (vertices sit on pixel corners)
    x0 = np.floor(vertices[:, 0] - 0.5).astype(int)
    y0 = np.floor(vertices[:, 1] - 0.5).astype(int)
    near = np.full(len(vertices), np.inf)
    for dx in (0, 1):
        for dy in (0, 1):
            xs, ys = (x0 + dx).clip(0, w - 1), (y0 + dy).clip(0, h - 1)
            near = np.minimum(near, dist[ys, xs])
    return int((near > tolerance).sum())


def _masks(instances: Instances, h: int, w: int, scale: float) -> np.ndarray:
    out = np.zeros((len(instances), h, w), dtype=bool)
    for i, shape in enumerate(instances.shapes):
        out[i] = (shape if scale == 1.0 else shape.scaled(scale)).to_mask(h, w)
    return out


def _box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


@dataclass
class _Refined:
    clicks: int
    vertices: int


def _refine(
    truth: np.ndarray,
    current: np.ndarray,
    box: np.ndarray | None,
    assist: Assist | None,
    vertices: np.ndarray,
    tolerance: float,
) -> _Refined:
    """Corrective clicks from ``current`` until IoU >= ACCEPT_IOU or MAX_CLICKS, then the
    vertices still off the outline."""
    points: list[np.ndarray] = []
    labels: list[int] = []
    iou = _iou(truth, current)
    while assist is not None and iou < ACCEPT_IOU and len(points) < MAX_CLICKS:
        click = corrective_click(truth, current)
        if click is None:
            break
        points.append(click[0])
        labels.append(click[1])
        answer = assist(Prompt(box, np.array(points, dtype=np.float64), np.array(labels)))
        if answer is not None:
            answer = np.asarray(answer, bool)
            better = _iou(truth, answer)
            if better > iou:  # a worse answer is not kept
                current, iou = answer, better
    left = 0 if iou >= ACCEPT_IOU else remaining_vertices(vertices, current, tolerance)
    return _Refined(len(points), left)


def simulate_photo(
    truth: Instances,
    shown: Instances,
    assist: Assist | None,
    height: int,
    width: int,
    *,
    scale: float = 1.0,
) -> Tally:
    """The actions to go from ``shown`` (predictions) to ``truth`` (the final labels) on one
    ``height`` x ``width`` photo; both in original pixels. Masks are compared at ``scale``
    (the assistance's pixels: ``assist`` takes and returns prompts and masks there).
    ``assist`` None: no assistance, every fix and draw is vertices by hand.

    Matching ignores groups: call once per group (damage, part...) and add the tallies.
    """
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    t_masks = _masks(truth, h, w, scale)
    s_masks = _masks(shown, h, w, scale)
    # each labelled outline as drawn by hand (original pixels), then in mask pixels
    verts = [
        np.concatenate([simplify_ring(r, VERTEX_TOLERANCE) for p in s.polygons for r in p.rings()])
        * scale
        for s in truth.shapes
    ]
    tol = VERTEX_TOLERANCE * scale + 0.5
    tally = Tally(by_hand=sum(len(v) for v in verts))
    matched_truth = set()
    pairs = {s: (t, iou) for s, t, iou in match(t_masks, s_masks)}
    for s in range(len(shown)):
        if s not in pairs:
            tally.delete += 1
            tally.deleted += 1
            continue
        t, iou = pairs[s]
        matched_truth.add(t)
        if shown.class_ids[s] != truth.class_ids[t]:
            tally.relabel += RELABEL_ACTIONS
            tally.relabelled += 1
        elif iou >= ACCEPT_IOU:
            tally.accept += 1
            tally.accepted += 1
        if iou < ACCEPT_IOU:
            box = _box(s_masks[s]) if s_masks[s].any() else None
            done = _refine(t_masks[t], s_masks[s], box, assist, verts[t], tol)
            tally.fix_clicks += done.clicks
            tally.fix_vertices += done.vertices
            tally.fixed += 1
    for t in range(len(truth)):
        if t in matched_truth:
            continue
        tally.drawn += 1
        if assist is None or not t_masks[t].any():
            tally.draw_vertices += len(verts[t])
            continue
        box = _box(t_masks[t])
        tally.draw_box += BOX_ACTIONS
        answer = assist(Prompt(box, np.zeros((0, 2)), np.zeros(0, dtype=np.int64)))
        start = np.zeros((h, w), bool) if answer is None else np.asarray(answer, bool)
        done = _refine(t_masks[t], start, box, assist, verts[t], tol)
        tally.draw_clicks += done.clicks
        tally.draw_vertices += done.vertices
    return tally
