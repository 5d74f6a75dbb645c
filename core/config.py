"""One settings object, read from ``PANELBEATER_*`` environment variables.

Use :func:`get_settings`; the CLI and tests replace it with :func:`configure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator
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

    #: ``auto`` picks CUDA when present.
    device: Literal["auto", "cpu", "cuda"] = "auto"

    #: Assistance back end: ``auto`` uses SAM when a checkpoint is configured, else the
    #: best weight-free back end.
    assist_backend: str = "auto"
    sam_checkpoint: Path | None = None
    sam_model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    mobile_sam_checkpoint: Path | None = None

    #: The part classifier's ResNet34 on the CPU: false forces fp32, true int8 (about 4x
    #: faster; needs the calibration training stores); unset: as the model was trained.
    cpu_int8: bool | None = None

    #: Task queue: empty means Huey on SQLite in the data dir; ``redis://...`` for Redis.
    queue_url: str = ""
    start_worker: bool = True

    #: Bearer tokens expire after this many hours.
    token_ttl_hours: float = 12.0

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
