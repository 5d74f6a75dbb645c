"""Reading image files: size after EXIF orientation, a content hash, and pixels.

``read_image_info`` decodes the whole file (so a truncated or corrupt file fails here,
at import, rather than later in the annotator) and hashes the same bytes it decoded.

Every read is bounded by the settings: only regular files are opened (a pipe or a device
named ``x.jpg`` is refused, never read), files over ``max_image_bytes`` are refused before
they are read, and images over ``max_image_pixels`` are refused before they are decoded.
:func:`resolve_inside` keeps the names a label file lists inside its images folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.files import sha256_file

from .errors import ImageReadError

#: File name extensions (lower case, with the dot) that imports treat as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# EXIF orientations 5-8 rotate by 90 degrees, so width and height swap.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "ImageReadError",
    "is_image_file",
    "image_info_from_bytes",
    "list_image_files",
    "load_image_rgb",
    "read_image_info",
    "read_regular_file",
    "resolve_inside",
    "sha256_file",
]

#: Pillow plugins an image may be decoded with: the formats of IMAGE_EXTENSIONS (a JPEG
#: with extra pictures opens as MPO through JPEG). Others, such as EPS (which runs
#: Ghostscript), never load.
PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")


@dataclass(frozen=True)
class ImageInfo:
    """``width``/``height`` in pixels after EXIF orientation; ``format`` as Pillow names it."""

    width: int
    height: int
    sha256: str
    format: str


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path.

    Symbolic links to folders are not followed (a link to ``/`` would walk the whole disk);
    a link or special file with an image name is listed, so the import reports it by name
    (a link that leads out of the folder, a pipe) rather than leaving it out silently.
    """
    found: list[Path] = []
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for e in entries:
            if not e.is_symlink() and e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            elif is_image_file(e.name):
                found.append(Path(e.path))
    return sorted(found)


def resolve_inside(folder: str | Path, name: str | Path) -> Path:
    """``name`` (relative to ``folder``, or absolute) as a resolved path inside ``folder``.

    Symbolic links are followed before the check, so a link that points out of the folder
    is refused like ``../x`` or ``/etc/passwd``. The refusal reads the same whether or not
    the outside file exists, so a label file cannot probe the disk.

    Raises:
        ImageReadError: the path leads outside ``folder``; the message names the folder, and
            the caller names the entry.
    """
    base = Path(folder).resolve()
    try:
        path = (base / name).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        path = None
    if path is None or not path.is_relative_to(base):
        raise ImageReadError(
            f"the path leads outside the images folder {folder}, and only files inside that "
            "folder are imported; copy the image into the folder, or give the folder that "
            "holds it (--images)"
        )
    return path


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def read_regular_file(
    path: str | Path,
    *,
    limit: int,
    what: str = "image",
    setting: str = "max_image_bytes",
) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes.

    ``what`` names the file in messages; ``setting`` is the field of
    ``core.config.Settings`` that raises it.

    The file is opened without blocking and checked on the open descriptor, so a pipe
    cannot hang the caller and a device such as ``/dev/zero`` is never read.

    Raises:
        ImageReadError: missing, not a regular file, over ``limit``, or unreadable.
    """
    from core.config import env_name

    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as e:
        hint = "; check the images folder (--images DIR)" if what == "image" else ""
        raise ImageReadError(f"{what} {path}: the file does not exist{hint}") from e
    except OSError as e:
        raise ImageReadError(
            f"{what} {path}: cannot read the file ({e.strerror}); check its permissions"
        ) from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(
                f"{what} {path}: not a regular file (a folder, pipe or device); "
                "only ordinary files are read. Replace it with the file itself"
            )
        too_big = ImageReadError(
            f"{what} {path}: the file is larger than the limit of {_megabytes(limit)}; "
            f"shrink it, or raise the limit (setting {env_name(setting)})"
        )
        if st.st_size > limit:
            raise too_big
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise ImageReadError(f"{what} {path}: cannot read the file ({e.strerror})") from e
        if len(data) > limit:  # it grew while we read it
            raise too_big
        return data


def _read_bytes(path: Path) -> bytes:
    from core.config import get_settings

    return read_regular_file(path, limit=get_settings().max_image_bytes)


def _pil_open():
    """Pillow's own ``Image.open``: Ultralytics replaces it with a wrapper that, on an
    unreadable file, tries to pip-install a HEIF plugin instead of failing."""
    import sys

    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    if patches is not None and Image.open is getattr(patches, "image_open", None):
        return patches._image_open
    return Image.open


def _open_decoded(path: Path | str, data: bytes):
    """The decoded Pillow image of ``data``; ``path`` names the file in messages."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    from core.config import env_name, get_settings

    max_pixels = get_settings().max_image_pixels
    # Pillow's own guard, for every use of Pillow in the process: it refuses images over
    # twice this and warns above it. The check below refuses them at the limit itself.
    Image.MAX_IMAGE_PIXELS = max_pixels

    def too_large(size: str) -> ImageReadError:
        return ImageReadError(
            f"image {path}: {size}more than the limit of {max_pixels:,} pixels, so it is refused "
            "as a possible decompression bomb; shrink the photo, or raise the limit "
            f"(setting {env_name('max_image_pixels')})"
        )

    # Ultralytics sets LOAD_TRUNCATED_IMAGES=True at import for its loaders, which would make
    # Pillow pad a truncated file silently; imports must see truncation as an error.
    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img = _pil_open()(io.BytesIO(data), formats=PIL_FORMATS)
        if img.width * img.height > max_pixels:
            raise too_large(f"{img.width}x{img.height} is ")
        img.load()  # full decode: truncated or corrupt data raises here
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise too_large("") from e
    except UnidentifiedImageError as e:
        raise ImageReadError(
            f"image {path}: not a readable image (expected one of {', '.join(IMAGE_EXTENSIONS)}); "
            "replace or remove the file"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(
            f"image {path}: the file is truncated or corrupt ({e}); "
            "re-export or re-download it, or remove it from the folder"
        ) from e
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    return img


def _orientation(img) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block must not make a good image unreadable
        return 1


def read_image_info(path: str | Path) -> ImageInfo:
    """Size (after EXIF orientation), sha256 of the bytes and format of an image file.

    Raises:
        ImageReadError: missing, unreadable, not a regular file, over the byte or pixel
            limits, truncated or corrupt file (the message names it).
    """
    path = Path(path)
    return image_info_from_bytes(_read_bytes(path), path)


def image_info_from_bytes(data: bytes, name: str | Path) -> ImageInfo:
    """:func:`read_image_info` for bytes already in memory (an upload named ``name``).

    Raises:
        ImageReadError: over the byte or pixel limits, not an image, truncated or corrupt.
    """
    from core.config import env_name, get_settings

    limit = get_settings().max_image_bytes
    if len(data) > limit:
        raise ImageReadError(
            f"image {name}: the file is larger than the limit of {_megabytes(limit)}; "
            f"shrink it, or raise the limit (setting {env_name('max_image_bytes')})"
        )
    img = _open_decoded(name, data)
    w, h = img.size
    if _orientation(img) in _SWAPPING_ORIENTATIONS:
        w, h = h, w
    return ImageInfo(
        width=w, height=h, sha256=hashlib.sha256(data).hexdigest(), format=img.format or ""
    )


def load_image_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Pixels as ``(H, W, 3)`` uint8 RGB with EXIF orientation applied.

    With ``max_side`` the image is shrunk (aspect kept) so its longer side is at most that.
    """
    path = Path(path)
    return rgb_from_bytes(_read_bytes(path), path, max_side=max_side)


def rgb_from_bytes(data: bytes, name: str | Path, max_side: int | None = None) -> np.ndarray:
    """:func:`load_image_rgb` for bytes already in memory (``name`` names them in messages).

    Raises:
        ImageReadError: over the pixel limit, not an image, truncated or corrupt.
    """
    from PIL import Image, ImageOps

    img = _open_decoded(name, data)
    img = ImageOps.exif_transpose(img)
    img = img.convert("RGB")
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR
        )
    return np.asarray(img, dtype=np.uint8)
