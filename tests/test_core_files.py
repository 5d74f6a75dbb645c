"""core.files.atomic_write: whole files only, even with two writers at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.files import atomic_write, write_bytes_atomic, write_text_atomic


def test_two_writers_at_once_leave_one_whole_file_and_no_temporaries(tmp_path: Path):
    target = tmp_path / "cache" / "descriptor.npy"
    payloads = [bytes([k]) * 2_000_000 for k in (1, 2)]
    start = threading.Barrier(3)
    errors: list[BaseException] = []
    seen: set[bytes] = set()

    def writer(data: bytes) -> None:
        try:
            start.wait()
            for _ in range(15):
                write_bytes_atomic(target, data)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader() -> None:
        start.wait()
        for _ in range(200):
            if target.exists():
                body = target.read_bytes()
                seen.add(body[:1] * len(body))
                assert body in payloads, f"a reader saw {len(body)} bytes, not a whole file"

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert target.read_bytes() in payloads
    assert seen <= set(payloads)
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "model.pt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
