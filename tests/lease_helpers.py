"""Annotators taking photos from the queue over HTTP at the same time, and the check that no
photo was handed to two people.

Shared by ``tests/test_leases.py`` (a short run in ``make test``) and ``bench/bench_leases.py``
(20 annotators, the figures). Each annotator loops: ``GET /api/queue/next``, save one square
on the photo it got, mark it labelled (so it leaves the queue), and ask for the next. A photo
that leaves the queue is never offered again, so any photo handed to two different people is
a double hand-out, whether or not their leases overlapped in time.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from browser_helpers import image_rows, synthetic_photo

SQUARE = [{"exterior": [[4, 4], [30, 4], [30, 30], [4, 30]], "holes": []}]


def seed_queue(data_dir: Path, *, photos: int, annotators: int) -> list[str]:
    """Add ``photos`` photos (rows sharing one small file: the hand-out never reads pixels)
    to the configured store's project and create ``annotators`` annotators; their bearer
    tokens (issued directly: no slow sign-in)."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import create_user, issue_token

    path = synthetic_photo(data_dir / "photos" / "car.jpg", width=64, height=48)
    with session_scope() as session:
        project = get_or_create_project(session)
        session.add_all(image_rows(project.id, photos, path=str(path), file_name="car_{i:03d}.jpg"))
        tokens = []
        for i in range(annotators):
            user = create_user(session, username=f"ann{i:02d}", password="x" * 12, role="annotator")
            tokens.append(issue_token(session, user))
    return tokens


@dataclass
class LoadResult:
    #: (annotator, photo id) per hand-out, in the order they arrived
    handouts: list[tuple[int, int]] = field(default_factory=list)
    next_s: list[float] = field(default_factory=list)
    save_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def doubles(self) -> dict[int, set[int]]:
        """Photos handed to more than one annotator, with who got them."""
        by_photo: dict[int, set[int]] = defaultdict(set)
        for who, photo in self.handouts:
            by_photo[photo].add(who)
        return {p: w for p, w in by_photo.items() if len(w) > 1}

    def figures(self) -> dict[str, float]:
        def pct(xs: list[float], q: int) -> float:
            return round(1000 * statistics.quantiles(xs, n=100)[q - 1], 1) if len(xs) > 1 else 0.0

        return {
            "handouts": len(self.handouts),
            "double_handouts": len(self.doubles()),
            "errors": len(self.errors),
            "next_p50_ms": pct(self.next_s, 50),
            "next_p95_ms": pct(self.next_s, 95),
            "save_p50_ms": pct(self.save_s, 50),
            "save_p95_ms": pct(self.save_s, 95),
            "saves_per_s": round(len(self.save_s) / self.wall_s, 1) if self.wall_s else 0.0,
            "wall_s": round(self.wall_s, 2),
        }


def run_load(url: str, tokens: list[str], *, photos_each: int) -> LoadResult:
    """Every annotator (one thread each, released together by a barrier) takes next and saves
    ``photos_each`` times against the server at ``url``."""
    import httpx

    result = LoadResult()
    lock = threading.Lock()
    barrier = threading.Barrier(len(tokens))

    def annotator(k: int, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            barrier.wait()
            for _ in range(photos_each):
                t0 = time.perf_counter()
                r = client.get("/api/queue/next")
                t1 = time.perf_counter()
                if r.status_code != 200:
                    with lock:
                        result.errors.append(f"next: {r.status_code} {r.text[:200]}")
                    return
                image = r.json()["image"]
                if image is None:
                    return
                with lock:
                    result.handouts.append((k, image["id"]))
                    result.next_s.append(t1 - t0)
                body = {
                    "version": image["version"],
                    "annotations": [{"class_id": 1, "geometry": SQUARE}],
                }
                t0 = time.perf_counter()
                r = client.put(f"/api/images/{image['id']}/annotations", json=body)
                t1 = time.perf_counter()
                done = client.post(f"/api/images/{image['id']}/status", json={"status": "labelled"})
                with lock:
                    if r.status_code != 200 or done.status_code != 200:
                        result.errors.append(
                            f"save: {r.status_code} {done.status_code} {r.text[:200]}"
                        )
                    result.save_s.append(t1 - t0)

    threads = [threading.Thread(target=annotator, args=(k, t)) for k, t in enumerate(tokens)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_s = time.perf_counter() - start
    return result
