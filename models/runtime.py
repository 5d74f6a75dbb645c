"""Process-wide settings of the model libraries, applied once when a process starts.

The CLI's entry (``panelbeater ...``, ``serve`` and ``worker`` included) and
``python -m jobs.worker`` call :func:`apply_process_settings`; stage constructors leave
the process alone, so a library's defaults hold unless a setting says otherwise.
torch is imported only when a setting needs it, so a command that trains nothing stays fast.
"""

from __future__ import annotations

from core.config import Settings, get_settings


def set_torch_threads(n: int | None) -> None:
    """Run torch's CPU operators on ``n`` threads; None keeps torch's own choice (one per
    physical core, or ``OMP_NUM_THREADS``)."""
    if n is None:
        return
    if n < 1:
        raise ValueError(f"torch threads must be 1 or more, got {n}")
    import torch

    torch.set_num_threads(n)


def apply_process_settings(settings: Settings | None = None) -> None:
    """Apply the settings that act on the whole process (the ``torch_threads`` setting)."""
    s = settings or get_settings()
    set_torch_threads(s.torch_threads)
