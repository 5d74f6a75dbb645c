"""Full-resolution regions of a photo, for sharp zoom in the workspace.

The canvas shows a downscaled copy of each photo (about the screen's size). Zoomed in past that
copy's resolution, it asks for the visible rectangle at the resolution the screen can show:
``region_jpeg`` crops the original and scales it by ``scale`` (1 = original pixels).

Speed: the expensive step is decoding the 12-MP JPEG (~100 ms), so the decoded photo is kept
(the last ``region_decoded_photos`` of them) and a pan or a second zoom step only crops and
encodes. When ``scale`` is at most 1/2, libjpeg's DCT scaling (``draft``) decodes straight to a
half, quarter or eighth of the size. Encoded answers are kept too (``region_cache_entries``),
keyed by the photo's content hash, so the canvas, which snaps regions to a grid, gets the same
bytes again without any work.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage

from core.config import env_name, get_settings
from services.errors import Invalid


@dataclass(frozen=True)
class Region:
    """A rectangle of the original photo in pixels (``x``, ``y`` its top-left corner), and the
    factor ``scale`` in (0, 1] its pixels are resized by."""

    x: int
    y: int
    w: int
    h: int
    scale: float

    @property
    def out_size(self) -> tuple[int, int]:
        """(width, height) of the answer in pixels; at least 1x1."""
        return max(1, math.ceil(self.w * self.scale)), max(1, math.ceil(self.h * self.scale))


def check_region(
    width: int, height: int, x: int, y: int, w: int, h: int, scale: float = 1.0
) -> Region:
    """The region ``x, y, w, h`` of a ``width`` x ``height`` photo at ``scale``, checked:
    inside the photo, non-empty, 0 < scale <= 1, and no more output pixels than the
    ``region_max_output_pixels`` setting. Raises ``Invalid`` naming the field otherwise."""
    if w < 1 or h < 1:
        raise Invalid(f"region: w and h must be at least 1 pixel (got w={w}, h={h})")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise Invalid(
            f"region: x={x}, y={y}, w={w}, h={h} leaves the {width}x{height} photo; "
            f"keep 0 <= x, x + w <= {width}, 0 <= y and y + h <= {height}"
        )
    if not (0 < scale <= 1) or math.isnan(scale):
        raise Invalid(f"region: scale must be in (0, 1] (1 = original pixels), got {scale}")
    region = Region(x, y, w, h, scale)
    ow, oh = region.out_size
    limit = get_settings().region_max_output_pixels
    if ow * oh > limit:
        raise Invalid(
            f"region: {ow}x{oh} = {ow * oh} output pixels exceeds the limit of {limit} "
            f"({env_name('region_max_output_pixels')}); ask for a smaller region or a lower scale"
        )
    return region


class _LRU:
    """A small thread-safe LRU whose capacity is read at each put (settings may change)."""

    def __init__(self) -> None:
        self._items: OrderedDict[object, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object) -> object | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: object, value: object, capacity: int) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_encoded = _LRU()
_decoded = _LRU()
_stats = {"hits": 0, "misses": 0, "decodes": 0}


def cache_stats() -> dict[str, int]:
    """Counters since start (or :func:`clear_caches`): answers from the cache, answers made,
    and photos decoded."""
    return dict(_stats)


def clear_caches() -> None:
    _encoded.clear()
    _decoded.clear()
    for k in _stats:
        _stats[k] = 0


def _reduction(scale: float) -> int:
    """The largest JPEG DCT reduction (1, 2, 4 or 8) that still gives at least ``scale``."""
    r = 1
    while r < 8 and 1 / (2 * r) >= scale:
        r *= 2
    return r


def _decoded_photo(path: Path, key: str, reduce: int) -> PILImage.Image:
    """The photo at ``path`` decoded to RGB at 1/``reduce`` of its size, from the cache."""
    cached = _decoded.get((key, reduce))
    if cached is not None:
        return cached  # type: ignore[return-value]
    with PILImage.open(path) as im:
        if reduce > 1:
            im.draft("RGB", (math.ceil(im.width / reduce), math.ceil(im.height / reduce)))
        im = im.convert("RGB")
    _stats["decodes"] += 1
    _decoded.put((key, reduce), im, get_settings().region_decoded_photos)
    return im


def region_jpeg(path: Path, key: str, width: int, region: Region) -> tuple[bytes, bool]:
    """JPEG bytes of ``region`` of the photo at ``path`` (``width`` pixels wide originally;
    ``key`` names its content, e.g. its sha256), and whether they came from the cache."""
    settings = get_settings()
    ckey = (key, region, settings.region_jpeg_quality)
    hit = _encoded.get(ckey)
    if hit is not None:
        _stats["hits"] += 1
        return hit, True  # type: ignore[return-value]
    _stats["misses"] += 1
    im = _decoded_photo(path, key, _reduction(region.scale))
    # draft() rounds sizes up, so the decoded scale is measured, not assumed.
    f = im.width / width
    box = (
        region.x * f,
        region.y * f,
        min(im.width, (region.x + region.w) * f),
        min(im.height, (region.y + region.h) * f),
    )
    out_size = region.out_size
    if f == 1 and out_size == (region.w, region.h):
        out = im.crop((region.x, region.y, region.x + region.w, region.y + region.h))
    else:
        out = im.resize(out_size, PILImage.Resampling.LANCZOS, box=box)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=settings.region_jpeg_quality)
    data = buf.getvalue()
    _encoded.put(ckey, data, settings.region_cache_entries)
    return data, False
