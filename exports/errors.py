"""Errors shared by the format converters."""

from __future__ import annotations


class FormatError(ValueError):
    """A file whose structure does not fit its format.

    The message names the file, the field or entry, what was expected and what to do.
    """


class ImageReadError(ValueError):
    """An image file that cannot be opened or fully decoded."""


class ExportRefused(ValueError):
    """A record an exporter will not write: a coordinate that is NaN, infinite or far outside
    its image, or a score that is not finite (``exports.bounds``). The message names the
    photo and the instance, and what to do."""
