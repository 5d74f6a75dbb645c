"""What each job kind does. Every handler is ``fn(ctx: JobContext, **params) -> dict``.

Model work goes through ``services.model_runs`` (``train_stage``, ``predict_stage``,
``evaluate_stage``), written with the model stages; selection through
:mod:`active_learning.service`; rounds through :mod:`jobs.rounds`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from db.session import session_scope
from jobs.runner import JobContext
from services.errors import Invalid


def model_runs():
    """``services.model_runs``, with a clear error when this build lacks it."""
    try:
        from services import model_runs as mr
    except ImportError as e:
        raise RuntimeError(
            f"model training and prediction are not available in this build (services.model_runs: {e})."
        ) from e
    return mr


def call_model(fn_name: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``services.model_runs.<fn_name>``, passing only the keywords it accepts."""
    fn = getattr(model_runs(), fn_name, None)
    if fn is None:
        raise RuntimeError(f"services.model_runs has no {fn_name}(); update the model stages.")
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def _project(session):
    from services.projects import get_or_create_project

    return get_or_create_project(session)


def _plain(value: Any) -> Any:
    """A JSON-able summary of what a model call returned."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    for attr in ("name", "id"):
        if hasattr(value, "metrics") and hasattr(value, attr):
            return {
                "id": getattr(value, "id", None),
                "name": getattr(value, "name", None),
                "metrics": value.metrics,
            }
    return str(value)


def run_preannotate(
    ctx: JobContext, *, stage: str, version: str | None = None, limit: int | None = None, **_
) -> dict:
    with session_scope() as s:
        out = call_model(
            "predict_stage",
            s,
            _project(s),
            stage,
            version=version,
            limit=limit,
            progress=ctx.progress_callback(f"pre-annotating with {stage}"),
        )
    return {"predicted": _plain(out)}


def run_train(
    ctx: JobContext,
    *,
    stage: str,
    config: str = "tiny",
    epochs: int | None = None,
    device: str | None = None,
    **_,
) -> dict:
    with session_scope() as s:
        mv = call_model(
            "train_stage",
            s,
            _project(s),
            stage,
            config=config,
            epochs=epochs,
            device=device,
            progress=ctx.progress_callback(f"training {stage}"),
        )
    return {"version": _plain(mv)}


def run_evaluate(ctx: JobContext, *, stage: str, version: str | None = None, **_) -> dict:
    with session_scope() as s:
        metrics = call_model(
            "evaluate_stage",
            s,
            _project(s),
            stage,
            version=version,
            progress=ctx.progress_callback(f"evaluating {stage}"),
        )
    return {"metrics": _plain(metrics)}


def run_select(ctx: JobContext, *, strategy: str = "hybrid", k: int = 100, **kw) -> dict:
    from active_learning.service import select

    ctx.report(stage=f"selecting {k} by {strategy}", progress=0.1)
    with session_scope() as s:
        picks = select(s, _project(s), strategy=strategy, k=k)
    return {"strategy": strategy, "selected": [[i, round(v, 6)] for i, v in picks]}


def run_embed(
    ctx: JobContext,
    *,
    limit: int | None = None,
    image_ids: list[int] | None = None,
    force: bool = False,
    pause_s: float = 0.0,
    **_,
) -> dict:
    """Cheap cold-start descriptors for the queue head (and stage embeddings when the model
    stages offer ``embed_images``). ``pause_s`` sleeps between images, leaving CPU to the web
    process on small machines."""
    from sqlmodel import select

    from active_learning.descriptors import ensure_descriptors
    from db.models import Image
    from services.images import queue_ids

    with session_scope() as s:
        project = _project(s)
        ids = image_ids or queue_ids(s, project.id)
        if limit:
            ids = ids[:limit]
        images = list(s.exec(select(Image).where(Image.id.in_(ids))).all())
    images.sort(key=lambda im: ids.index(im.id))
    ctx.report(stage="image descriptors", progress=0.0)

    def cb(i: int, n: int) -> None:
        ctx.report(progress=0.9 * i / max(n, 1), message=None)
        if pause_s:
            time.sleep(pause_s)

    computed = ensure_descriptors(images, force=force, progress=cb)
    result: dict[str, Any] = {"images": len(images), "descriptors_computed": computed}
    try:
        mr = model_runs()
    except RuntimeError:
        mr = None
    if mr is not None and hasattr(mr, "embed_images"):
        with session_scope() as s:
            result["embeddings"] = _plain(
                call_model(
                    "embed_images",
                    s,
                    _project(s),
                    [im.id for im in images],
                    progress=ctx.progress_callback("stage embeddings", (0.9, 1.0)),
                )
            )
    return result


def run_round(ctx: JobContext, **params: Any) -> dict:
    from jobs.rounds import run_round as _run

    return _run(ctx, **params)


HANDLERS: dict[str, Callable[..., dict]] = {
    "preannotate": run_preannotate,
    "embed": run_embed,
    "train": run_train,
    "evaluate": run_evaluate,
    "select": run_select,
    "round": run_round,
}

_REQUIRED = {"preannotate": ("stage",), "train": ("stage",), "evaluate": ("stage",)}


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check a new job's parameters before it is queued (errors name the field)."""
    for key in _REQUIRED.get(kind, ()):
        if not params.get(key):
            raise Invalid(f'a {kind} job needs params.{key} (e.g. {{"{key}": "yolo_seg"}}).')
    if "k" in params:
        try:
            params["k"] = int(params["k"])
        except (TypeError, ValueError):
            raise Invalid("params.k must be a whole number of images.") from None
        if params["k"] < 1:
            raise Invalid("params.k must be at least 1.")
    if kind == "select" and "strategy" in params:
        from active_learning.strategies import STRATEGIES

        if params["strategy"] not in STRATEGIES:
            raise Invalid(f"params.strategy must be one of {', '.join(STRATEGIES)}.")
    if kind == "round":
        stages = params.get("stages")
        if stages is not None and (
            not isinstance(stages, list) or not all(isinstance(x, str) for x in stages)
        ):
            raise Invalid('params.stages must be a list of stage names, e.g. ["yolo_seg"].')
    return params
