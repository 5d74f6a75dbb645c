"""What the lead sees and starts: counts, throughput, model versions and their plots, and
retraining rounds. The REST API (``/api/stats``, ``/api/models``, ``/api/retrain``) and the
Gradio dashboard both call these."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from core.metrics import flatten_metrics
from db.models import ModelVersion, Project
from services.dashboard.stats import project_stats
from services.errors import ServiceError
from services.review.throughput import annotator_throughput
from services.training import registry
from services.training.pseudo_labels import pseudo_phrase


def model_version_rows(session: Session) -> list[dict[str, Any]]:
    """Every model version, by stage and newest first: name, stage, version, promoted, metrics."""
    rows = session.exec(
        select(ModelVersion).order_by(ModelVersion.stage, ModelVersion.version.desc())
    ).all()
    return [
        {
            "name": m.name,
            "stage": m.stage,
            "version": m.version,
            "promoted": m.promoted,
            "metrics": m.metrics or {},
            "created_at": m.created_at.isoformat(),
        }
        for m in rows
    ]


def version_table(session: Session) -> list[dict[str, Any]]:
    """The dashboard's model versions, by stage and newest first, each in a few readable
    fields: the primary metric, up to :data:`HELDOUT_SHOWN` other held-out figures, the
    photos it was trained on and why it was (not) promoted."""
    rows = session.exec(
        select(ModelVersion).order_by(ModelVersion.stage, ModelVersion.version.desc())
    ).all()
    out = []
    for mv in rows:
        metrics = mv.metrics or {}
        pm = registry.primary_metric(metrics, mv.stage)
        held = flatten_metrics(metrics.get("holdout") or {})
        others = [
            (k, v)
            for k, v in held.items()
            if (pm is None or f"holdout.{k}" != pm[0]) and ".per_class_" not in k
        ]
        out.append(
            {
                "id": mv.id,
                "name": mv.name,
                "stage": mv.stage,
                "promoted": mv.promoted,
                "primary": f"{pm[0].removeprefix('holdout.')} = {pm[1]:.3f}" if pm else "none",
                "heldout": ", ".join(f"{k} {v:.3f}" for k, v in others[:HELDOUT_SHOWN]),
                "trained_on": trained_on(mv.train_snapshot),
                "why": (metrics.get("promotion") or {}).get("reason", ""),
            }
        )
    return out


def trained_on(snapshot: dict[str, Any] | None) -> str:
    """What a version trained on, for the version table: the labelled photos' count, and
    its pseudo-labels when it had some ("40 + 12 pseudo-labelled photos (80 instances)")."""
    snap = snapshot or {}
    count = str(snap.get("count", ""))
    phrase = pseudo_phrase(snap)
    return f"{count} {phrase}".strip() if phrase else count


#: Held-out figures besides the primary one that the dashboard's version table shows.
HELDOUT_SHOWN = 4


def model_state(session: Session, project: Project) -> list[str]:
    """Sentences about promoted versions that show no predictions on the project's photos
    (``services.training.predictions.empty_result_reason``) and about the classes they do not
    pre-annotate (``services.training.bar.withheld_sentence``); empty when neither applies."""
    from models.registry import pre_annotating_stages
    from services.accounts.projects import project_taxonomy
    from services.training.bar import withheld_sentence
    from services.training.predictions import empty_result_reason, version_yield

    taxonomy = project_taxonomy(project)

    def class_name(cid: int) -> str:
        return taxonomy.by_id(cid).display_name if cid in taxonomy else f"class {cid}"

    out = []
    for stage in pre_annotating_stages():
        mv = registry.current(session, stage)
        if mv is None:
            continue
        counts = version_yield(session, project.id, mv.id)
        pm = registry.primary_metric(mv.metrics or {}, mv.stage)
        reason = empty_result_reason(mv, counts["photos"], counts["predictions"], pm)
        if reason:
            out.append(reason)
        withheld = withheld_sentence(mv, class_name)
        if withheld:
            out.append(withheld)
    return out


def promote_version(
    session: Session, ref: int | str, *, confirm_below_bar: bool = False
) -> ModelVersion:
    """The lead's override: promote a version whatever the promotion rule says (below the
    bar to pre-annotate only with ``confirm_below_bar``)."""
    return registry.promote(session, ref, confirm_below_bar=confirm_below_bar)


def rollback_stage_of(session: Session, ref: int | str) -> ModelVersion:
    """Roll back the stage of version ``ref`` (by name or id): promote the promoted
    version's parent, else the next older one."""
    return registry.rollback(session, registry.get_version(session, ref).stage)


def job_summary(job: dict[str, Any]) -> str:
    """What a job really did, in a line (``jobs.service.job_dict``'s shape): a round's
    steps after training (promotion verdicts, pre-annotation, the selection and any
    fallback), else its message; a failed job's error as one sentence
    (:func:`failure_sentence`)."""
    if job.get("error"):
        return "failed: " + failure_sentence(job["error"])
    steps = (job.get("result") or {}).get("steps")
    if steps:
        outcomes = [s["what"] for s in steps if s["step"] == "promote"]
        outcomes += [s["what"] for s in steps if " pre-annotated " in s["what"]]
        outcomes += [s["what"] for s in steps if s["step"] == "select"][-1:]
        return " · ".join(outcomes)
    return job.get("message") or ""


#: The longest failure sentence the jobs table shows; the rest is behind the job's details.
JOB_SENTENCE_CHARS = 160


def failure_sentence(error: str) -> str:
    """A failed job's error as the jobs table shows it: the error's line (the last line of a
    Python traceback, else the first line), without the class name of a domain error
    (``Invalid: ...``, whose message is the sentence), cut at :data:`JOB_SENTENCE_CHARS`
    with an ellipsis. The full error and the log stay in the job's details."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return "no error message was recorded; see the job's log"
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    name, sep, message = line.partition(": ")
    if sep and message and name.rsplit(".", 1)[-1] in _domain_error_names():
        line = message
    if len(line) > JOB_SENTENCE_CHARS:
        line = line[: JOB_SENTENCE_CHARS - 1].rstrip() + "…"
    return line


def _domain_error_names() -> set[str]:
    found, todo = set(), [ServiceError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo += cls.__subclasses__()
    return found


def dashboard_data(session: Session, project: Project) -> dict[str, Any]:
    """``{"stats", "throughput", "models"}``: counts per status, group and class
    (``services.dashboard.stats``), per-annotator throughput over the last week, model versions."""
    return {
        "stats": project_stats(session, project),
        "throughput": annotator_throughput(session, project.id),
        "models": model_version_rows(session),
    }


def start_weights_choices() -> list[tuple[str, str]]:
    """For the dashboard's weights picker: ``(label, "stage=name")`` for every file in the
    weights folder that a stage can start from (its ``start_weight_kind``)."""
    from models.registry import stage_class, stage_infos
    from services.training.weights import list_weights

    files = list_weights()
    out = []
    for info in stage_infos():
        kind = getattr(stage_class(info.name), "start_weight_kind", None)
        for rec in files:
            if kind and rec.kind == kind:
                out.append((f"{info.title} from {rec.name}", f"{info.name}={rec.name}"))
    return out


def picked_weights(picks: list[str] | None) -> dict[str, str]:
    """The picker's ``["stage=name", ...]`` as ``{stage: name}`` (the last pick per stage wins)."""
    return dict(p.split("=", 1) for p in picks or [] if "=" in p)


def version_dict(mv: ModelVersion) -> dict[str, Any]:
    """A model version as the registry routes show it, with its primary metric and the size
    of its training set."""
    pm = registry.primary_metric(mv.metrics or {}, mv.stage)
    snap = mv.train_snapshot or {}
    return {
        "id": mv.id,
        "name": mv.name,
        "stage": mv.stage,
        "version": mv.version,
        "promoted": mv.promoted,
        "metrics": mv.metrics or {},
        "primary_metric": {"name": pm[0], "value": pm[1]} if pm else None,
        "train_images": snap.get("count", len(snap.get("image_ids", []))),
        "parent_id": mv.parent_id,
        "sha256": mv.sha256,
        "created_at": mv.created_at.isoformat() if mv.created_at else None,
    }


def metrics_plot_png(session: Session, stage: str) -> bytes:
    """PNG: each metric of ``stage`` across its versions, the promoted one marked."""
    from active_learning.plots import metrics_across_versions

    current = registry.current(session, stage)
    return metrics_across_versions(
        [(m.name, m.metrics or {}) for m in registry.versions(session, stage)],
        title=f"{stage}: metrics per version",
        promoted=current.name if current else None,
    )


def learning_curve_png(session: Session) -> bytes:
    """PNG: primary metric against training-set size, one line per stage, over all versions."""
    from active_learning.plots import learning_curve

    series: dict[str, tuple[list[float], list[float]]] = {}
    for mv in registry.versions(session):
        pm = registry.primary_metric(mv.metrics or {}, mv.stage)
        n = (mv.train_snapshot or {}).get("count")
        if pm is None or n is None:
            continue
        xs, ys = series.setdefault(f"{mv.stage} ({pm[0]})", ([], []))
        xs.append(float(n))
        ys.append(pm[1])
    return learning_curve(series, metric="primary metric")
