"""The training presets every stage declares (``StageConfig.PRESETS``): ``tiny`` trains in
seconds (tests, a first look), ``small`` and ``base`` for real work."""

from __future__ import annotations

from enum import Enum


class Preset(str, Enum):
    tiny = "tiny"
    small = "small"
    base = "base"

    def __str__(self) -> str:  # in messages and environment variables, the name alone
        return self.value


PRESETS: tuple[str, ...] = tuple(p.value for p in Preset)
#: What a stage, a round or a job trains with when no preset is named.
DEFAULT_PRESET: str = Preset.tiny.value
