"""One settings object, read from ``PANELBEATER_*`` environment variables.

Use :func:`get_settings`; the CLI and tests replace it with :func:`configure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PANELBEATER_", extra="ignore")

    data_dir: Path = Path("panelbeater-data")
    #: SQLAlchemy URL; empty means SQLite at ``<data_dir>/panelbeater.db``.
    database_url: str = ""
    taxonomy_path: Path | None = None
    project_name: str = "default"

    host: str = "127.0.0.1"
    port: int = 7860
    #: Addresses of a TLS proxy in front of the app (comma-separated, e.g. "127.0.0.1"),
    #: whose X-Forwarded-For and X-Forwarded-Proto are trusted: the client's address then
    #: counts for login throttling, and the sign-in cookie is marked Secure. Empty: none.
    forwarded_allow_ips: str = ""

    #: ``auto`` picks CUDA when present.
    device: Literal["auto", "cpu", "cuda"] = "auto"

    #: Assistance back end: ``auto`` uses SAM when a checkpoint is configured, else the
    #: best weight-free back end.
    assist_backend: str = "auto"
    sam_checkpoint: Path | None = None
    sam_model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    mobile_sam_checkpoint: Path | None = None

    #: Assistance that trains itself (``services.assist_training``): after imports and saves,
    #: once a project holds ``assist_autotrain_min_polygons`` labelled polygons and again each
    #: time they grow by ``assist_autotrain_growth`` (0.5: by half), a background job trains
    #: assist_net (preset ``assist_autotrain_config``; ``assist_autotrain_epochs`` unset: the
    #: preset's) and promotes it only when it beats the current back end on held-out parts.
    #: ``PANELBEATER_ASSIST_AUTOTRAIN=false`` turns it off.
    assist_autotrain: bool = True
    assist_autotrain_min_polygons: int = Field(default=200, ge=1)
    assist_autotrain_growth: float = Field(default=0.5, gt=0)
    assist_autotrain_config: Literal["tiny", "small", "base"] = "small"
    assist_autotrain_epochs: int | None = Field(default=None, ge=1)

    #: The part classifier's ResNet34 on the CPU: false forces fp32, true int8 (about 4x
    #: faster; needs the calibration training stores); unset: as the model was trained.
    cpu_int8: bool | None = None

    #: Threads torch runs CPU operators on (training, SAM embeddings, the part classifier);
    #: unset: torch's own choice (about one per core). Applied once when a process starts
    #: (``models.runtime.apply_process_settings``).
    torch_threads: int | None = Field(default=None, ge=1)

    #: Task queue: empty means Huey on SQLite in the data dir; ``redis://...`` for Redis.
    queue_url: str = ""
    start_worker: bool = True

    #: Bearer tokens expire after this many hours.
    token_ttl_hours: float = 12.0

    #: Request bodies larger than this many bytes are refused with 413, whether declared by
    #: Content-Length or streamed (every route: /api uploads and the UI's own uploads).
    max_request_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    #: Image files larger than this many bytes are refused (imports, uploads, reads).
    max_image_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    #: Images with more pixels than this (width x height) are refused before they are
    #: decoded, so a decompression bomb is a reported bad file; also Pillow's own limit.
    max_image_pixels: int = Field(default=100_000_000, gt=0)
    #: Label files an import reads from inside a dataset (YOLO label and list files).
    max_label_file_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    #: Points in one polygon (its outline and holes together).
    max_vertices_per_polygon: int = Field(default=10_000, gt=0)
    #: Annotated instances on one photo.
    max_polygons_per_image: int = Field(default=1_000, gt=0)
    #: Longest review comment or fake-damage note, in characters.
    max_comment_chars: int = Field(default=2_000, gt=0)
    #: Largest ``attributes`` object of one annotation, as JSON text.
    max_attribute_chars: int = Field(default=4_096, gt=0)

    #: Sign-in throttling (``services.throttle``): after this many failed sign-ins for one
    #: user name, or from one client address, further attempts are refused for
    #: ``login_lockout_seconds``; each later failure doubles the wait, up to
    #: ``login_lockout_max_seconds``. Failures are forgotten ``login_failure_window_seconds``
    #: after the last one (or after the lockout ends). An address counts more failures
    #: because many people may sign in from behind one office router.
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_lockout_seconds: float = Field(default=60.0, gt=0)
    login_lockout_max_seconds: float = Field(default=3600.0, gt=0)
    login_failure_window_seconds: float = Field(default=900.0, gt=0)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'panelbeater.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def media_dir(self) -> Path:
        """Where uploaded images are copied to."""
        return self.data_dir / "media"

    @property
    def artifacts_dir(self) -> Path:
        """Where trained model versions are written."""
        return self.data_dir / "artifacts"

    @property
    def weights_dir(self) -> Path:
        """Checkpoints the team brings (``panelbeater weights add``), kept by sha256."""
        return self.data_dir / "weights"

    @property
    def cache_dir(self) -> Path:
        """Embedding caches and display-size image copies."""
        return self.data_dir / "cache"


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings: those given to :func:`configure`, else the environment's."""
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def configure(**values: object) -> Settings:
    """Replace the settings (the CLI's ``--data-dir`` and tests use this)."""
    global _settings
    _settings = Settings(**values)
    return _settings


def reset_settings() -> None:
    """Forget the settings so the next call re-reads the environment."""
    global _settings
    _settings = None
