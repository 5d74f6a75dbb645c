"""Weight-free assistance: OpenCV GrabCut seeded by the box and the clicks.

GrabCut works on a window around the prompt that reaches well past the box (``context``
= 0.75 of the box size on each side, at least ``min_context`` pixels), scaled to ``max_side``
pixels: a window barely larger than the box gives the colour model almost no background
sample, and the result collapses (mean IoU 0.36 on dsmlr parts, below the box itself).
Outside the box is certain background; inside, probable foreground. The answer is then
cleaned (small morphological opening/closing, only components that carry a real share of
the box, or a clicked point, are kept), and when GrabCut still collapses to a sliver of
the box or floods all of it, the box itself (minus background clicks) is returned: it is
never worse than the box-as-mask baseline on those cases, and the answer says so
(:data:`BOX_NOTE` in ``AssistResult.note``). Defaults were tuned on dsmlr
photos 1-300 (every third, 150 parts); bench/bench_assist.py reports photos 301-400.
"""

from __future__ import annotations

import numpy as np

from models.assist.base import Assistant, prompt_window


def _window(box, points, labels, w, h, context, min_context):
    """Integer xyxy window: the prompt's box grown by max(context * size, min_context)."""
    x0, y0, x1, y1 = prompt_window(points, labels, box, w, h, 0.0)
    mx = max(context * (x1 - x0), min_context)
    my = max(context * (y1 - y0), min_context)
    return (
        int(max(0, np.floor(x0 - mx))),
        int(max(0, np.floor(y0 - my))),
        int(min(w, np.ceil(x1 + mx))),
        int(min(h, np.ceil(y1 + my))),
    )


#: The note of an answer that is the prompt's box itself (GrabCut gave up).
BOX_NOTE = (
    "GrabCut could not separate the object from its surroundings and returned {what} "
    "unchanged (score {score:.2f}); adjust the outline by hand or add clicks"
)


class GrabCutAssistant(Assistant):
    backend = "grabcut"

    def __init__(
        self,
        iterations: int = 5,
        max_side: int = 160,
        context: float = 0.75,
        min_context: float = 32.0,
        min_share: float = 0.45,
        max_share: float = 0.97,
        core: float = 0.0,
        tolerance: float = 1.0,
        min_area: float = 16.0,
    ):
        super().__init__(tolerance, min_area)
        self.iterations = iterations
        self.max_side = max_side
        self.context = context
        self.min_context = min_context
        #: below this share of the box (or above ``max_share``) GrabCut has failed: use the box
        self.min_share = min_share
        self.max_share = max_share
        #: half-size, as a share of the box, of a central ellipse seeded as sure foreground
        self.core = core
        self._gave_up = False  # set by _predict_mask when it falls back to the prompt

    def predict(self, points: object = None, labels: object = None, box: object = None):
        """As :meth:`Assistant.predict`; an answer that fell back to the box carries
        :data:`BOX_NOTE`."""
        self._gave_up = False
        result = super().predict(points, labels, box)
        if self._gave_up and result.shape is not None:
            what = "your box" if box is not None else "the area around your clicks"
            result.note = BOX_NOTE.format(what=what, score=result.score)
        return result

    def _predict_mask(self, points, labels, box):
        import cv2

        img = self._image
        h, w = img.shape[:2]
        x0, y0, x1, y1 = _window(box, points, labels, w, h, self.context, self.min_context)
        crop = img[y0:y1, x0:x1]
        scale = min(1.0, self.max_side / max(crop.shape[:2]))
        small = (
            cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            if scale < 1
            else crop
        )
        sh, sw = small.shape[:2]
        mask = np.full((sh, sw), cv2.GC_BGD, dtype=np.uint8)
        if box is not None:
            bx = ((box - [x0, y0, x0, y0]) * scale).round().astype(int)
            bx = np.clip(bx, 0, [sw, sh, sw, sh])
            bx[2:] = np.maximum(bx[2:], bx[:2] + 1)
        else:
            # clicks only: the guessed region around them is probable foreground
            gx0, gy0, gx1, gy1 = prompt_window(points, labels, None, w, h, 0.0)
            bx = (np.array([gx0 - x0, gy0 - y0, gx1 - x0, gy1 - y0]) * scale).round().astype(int)
            bx = np.clip(bx, 0, [sw, sh, sw, sh])
            mask[:] = cv2.GC_PR_BGD
        mask[bx[1] : bx[3], bx[0] : bx[2]] = cv2.GC_PR_FGD
        inbox = np.zeros((sh, sw), bool)
        inbox[bx[1] : bx[3], bx[0] : bx[2]] = True
        if self.core > 0 and box is not None:
            c = ((bx[0] + bx[2]) // 2, (bx[1] + bx[3]) // 2)
            ax = (
                max(1, int(self.core * (bx[2] - bx[0]))),
                max(1, int(self.core * (bx[3] - bx[1]))),
            )
            cv2.ellipse(mask, c, ax, 0, 0, 360, int(cv2.GC_FGD), -1)
        seeds = mask.copy()
        r = max(1, int(round(0.02 * max(sh, sw))))
        fg_pts = []
        for (px, py), lab in zip(points, labels, strict=True):
            cx, cy = int((px - x0) * scale), int((py - y0) * scale)
            cv2.circle(mask, (cx, cy), r, cv2.GC_FGD if lab == 1 else cv2.GC_BGD, -1)
            if lab == 1 and 0 <= cx < sw and 0 <= cy < sh:
                fg_pts.append((cx, cy))
        neg = (mask == cv2.GC_BGD) & (seeds != cv2.GC_BGD)  # background clicks inside the box
        fallback = (inbox & ~neg) | (mask == cv2.GC_FGD)
        if (
            not ((mask == cv2.GC_BGD) | (mask == cv2.GC_PR_BGD)).any()
            or not ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).any()
        ):
            # GrabCut needs both sides; a box that fills the photo has no background sample
            self._gave_up = True
            return self._full(fallback, scale, (x0, y0, x1, y1)), 0.5, (x0, y0)
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(small, mask, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            # degenerate colour model (e.g. a flat crop): the seeds are the answer
            self._gave_up = True
            return self._full(fallback, scale, (x0, y0, x1, y1)), 0.5, (x0, y0)
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        fg = self._clean(fg, fg_pts)
        share = fg[inbox].mean() if inbox.any() else 0.0
        if share < self.min_share or share > self.max_share:
            self._gave_up = True
            return self._full(fallback, scale, (x0, y0, x1, y1)), 0.3, (x0, y0)
        return self._full(fg.astype(bool), scale, (x0, y0, x1, y1)), 0.5 + 0.4 * share, (x0, y0)

    @staticmethod
    def _clean(fg: np.ndarray, fg_pts: list[tuple[int, int]]) -> np.ndarray:
        """Open/close away specks and slits, then keep the components that hold a clicked
        point or at least a fifth of the largest component's area."""
        import cv2

        k = np.ones((3, 3), np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, k)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, k)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        if n <= 2:
            return fg
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = set((np.nonzero(areas >= 0.2 * areas.max())[0] + 1).tolist())
        keep |= {int(lab[y, x]) for x, y in fg_pts if lab[y, x] > 0}
        return np.isin(lab, sorted(keep)).astype(np.uint8)

    @staticmethod
    def _full(m: np.ndarray, scale: float, win: tuple[int, int, int, int]) -> np.ndarray:
        """The working-size mask back at the window's original size, (H, W) bool."""
        import cv2

        x0, y0, x1, y1 = win
        if scale >= 1:
            return m.astype(bool)
        # linear + threshold gives smoother edges than nearest-neighbour when upscaling
        up = cv2.resize(m.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        return up >= 0.5


class BoxAssistant(Assistant):
    """The box itself as the mask: the baseline every back end has to beat."""

    backend = "box"

    def _predict_mask(self, points, labels, box):
        h, w = self._image.shape[:2]
        x0, y0, x1, y1 = prompt_window(points, labels, box, w, h, 0.0)
        return np.ones((y1 - y0, x1 - x0), dtype=bool), 1.0, (x0, y0)
