"""Task images read through Label Studio, with its API key, kept on disk by sha256.

A task's image URL is Label Studio's own (``/data/upload/...``, ``/data/local-files/?d=...``,
a storage proxy URL), relative or on the server of ``label_studio_url``; the API key goes
only to that server, and a URL of any other server is refused rather than fetched (a task
cannot make the backend call elsewhere). Downloads stop at ``ls_backend_max_image_bytes``.

The cache (``ls_backend_cache_dir``) keeps each image once under the sha256 of its bytes,
and a small file per URL naming that sha256, so a second request for a URL, or a task whose
data carries the ``sha256`` of an image already kept, reads the disk only. It holds at most
``ls_backend_cache_bytes``; the least recently read images go first.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlparse

from core.config import Settings, env_name
from core.files import write_bytes_atomic
from services.errors import Invalid


class ImageFetchError(Invalid):
    """An image that could not be read from Label Studio; the message names the task."""


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    sha256: str
    url: str
    cached: bool


def _is_jwt(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 3 and key.startswith("eyJ")


class LabelStudioAuth:
    """The ``Authorization`` header for Label Studio's API: ``Token <key>`` for a legacy
    token, ``Bearer <access token>`` for a personal access token (a JWT refresh token,
    exchanged at ``/api/token/refresh/`` and again when the server answers 401)."""

    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._access: str | None = None
        self._lock = threading.Lock()

    def header(self, *, renew: bool = False) -> dict[str, str]:
        if not _is_jwt(self.api_key):
            return {"Authorization": f"Token {self.api_key}"}
        with self._lock:
            if self._access is None or renew:
                import httpx

                r = httpx.post(
                    f"{self.base_url}/api/token/refresh/",
                    json={"refresh": self.api_key},
                    timeout=30,
                )
                if r.status_code != 200:
                    raise ImageFetchError(
                        f"Label Studio refused the API key ({env_name('label_studio_api_key')}): "
                        f"{r.status_code} from /api/token/refresh/; give a current access token"
                    )
                self._access = r.json()["access"]
            return {"Authorization": f"Bearer {self._access}"}


class ImageFetcher:
    """Reads task images from Label Studio (see the module docstring)."""

    def __init__(self, settings: Settings):
        if not settings.label_studio_url:
            raise Invalid(
                f"the backend reads task images from Label Studio: set "
                f"{env_name('label_studio_url')} (or LABEL_STUDIO_URL) to its address, e.g. "
                "http://localhost:8080, and LABEL_STUDIO_API_KEY to an API key"
            )
        self.base = settings.label_studio_url.rstrip("/") + "/"
        self.auth = LabelStudioAuth(settings.label_studio_url, settings.label_studio_api_key)
        self.limit = settings.ls_backend_max_image_bytes
        self.timeout = settings.ls_backend_fetch_timeout_s
        self.cache_bytes = settings.ls_backend_cache_bytes
        root = settings.ls_backend_cache_dir or (settings.cache_dir / "label_studio")
        self.images = Path(root) / "images"
        self.urls = Path(root) / "urls"
        self._lock = threading.Lock()

    # -- the cache --------------------------------------------------------------

    def _url_file(self, url: str) -> Path:
        return self.urls / hashlib.sha256(url.encode("utf-8")).hexdigest()

    def cached(self, sha256: str) -> bytes | None:
        """The kept image with this sha256 (checked against its bytes), else None."""
        if not (len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)):
            return None
        path = self.images / sha256
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            path.unlink(missing_ok=True)  # a torn or altered file: fetch it again
            return None
        path.touch()  # read recently: kept longest
        return data

    def _keep(self, url: str, data: bytes, sha: str) -> None:
        with self._lock:
            write_bytes_atomic(self.images / sha, data)
            write_bytes_atomic(self._url_file(url), sha.encode())
            files = sorted(
                (p for p in self.images.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime
            )
            total = sum(p.stat().st_size for p in files)
            for p in files:
                if total <= self.cache_bytes or p.name == sha:
                    break
                total -= p.stat().st_size
                p.unlink(missing_ok=True)

    # -- fetching ---------------------------------------------------------------

    def absolute(self, url: str, where: str) -> str:
        """``url`` on Label Studio's server; Invalid naming ``where`` for another server."""
        if not isinstance(url, str) or not url.strip():
            raise ImageFetchError(f"{where}: the task has no image URL")
        full = urljoin(self.base, url.strip())
        base, got = urlparse(self.base), urlparse(full)
        if (got.scheme, got.netloc) != (base.scheme, base.netloc):
            raise ImageFetchError(
                f"{where}: the image URL {url[:120]!r} is not on Label Studio's server "
                f"({base.scheme}://{base.netloc}, {env_name('label_studio_url')}); the backend "
                "reads images through Label Studio only (cloud storage through its proxy URLs)"
            )
        return full

    def fetch(self, url: str, *, where: str, sha256: str | None = None) -> FetchedImage:
        """The image at ``url`` (relative to Label Studio, or on its server), from the cache
        when it holds the URL or ``sha256``. Raises ImageFetchError naming ``where``: another
        server, an HTTP error, a download over the byte limit ."""
        full = self.absolute(url, where)
        for sha in (sha256, self._known_sha(full)):
            data = self.cached(sha) if sha else None
            if data is not None:
                return FetchedImage(data, sha, full, True)
        data = self._download(full, where)
        sha = hashlib.sha256(data).hexdigest()
        self._keep(full, data, sha)
        return FetchedImage(data, sha, full, False)

    def _known_sha(self, url: str) -> str | None:
        try:
            return self._url_file(url).read_text().strip()
        except OSError:
            return None

    def _download(self, url: str, where: str) -> bytes:
        import httpx

        for renew in (False, True):
            with httpx.stream(
                "GET",
                url,
                headers=self.auth.header(renew=renew),
                timeout=self.timeout,
                follow_redirects=False,
            ) as r:
                if r.status_code == 401 and not renew and _is_jwt(self.auth.api_key):
                    continue
                if r.status_code != 200:
                    raise ImageFetchError(
                        f"{where}: Label Studio answered {r.status_code} for the image {url}"
                        + (
                            f"; check the API key ({env_name('label_studio_api_key')})"
                            if r.status_code in (401, 403)
                            else ""
                        )
                    )
                declared = r.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.limit:
                    raise self._too_large(where, int(declared))
                chunks, size = [], 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > self.limit:
                        raise self._too_large(where, size, more=True)
                    chunks.append(chunk)
                return b"".join(chunks)
        raise AssertionError("unreachable: the second try returns or raises")

    def _too_large(self, where: str, size: int, *, more: bool = False) -> ImageFetchError:
        return ImageFetchError(
            f"{where}: the image is {'more than ' if more else ''}{size:,} bytes, over the limit "
            f"of {self.limit:,} (setting {env_name('ls_backend_max_image_bytes')})"
        )
