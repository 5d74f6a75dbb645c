"""Label Studio's annotations, pulled into the store when a webhook says they changed, and
the lead's rule for starting a retraining round afterwards.

``ANNOTATION_CREATED`` and ``ANNOTATION_UPDATED`` pull the task the webhook names;
``START_TRAINING`` pulls every annotated task of the Label Studio project (at most
``ls_backend_max_pull_tasks``). Tasks are read through ``label_studio_sdk`` and parsed by the
converter ``panelbeater import label-studio`` uses (``exports.label_studio.parse``), with the
project's labelling config mapped onto the taxonomy as ``/setup`` maps it. Each task's photo is
read through Label Studio (``ls_images``) and kept in the media folder by sha256, as uploads are.

A photo new to the store is imported (``services.data_io.imports.store_photo``: labelled when
it has instances). A photo the store holds gets Label Studio's instances as a save
(``services.labelling.saves.save_annotations``, so its history keeps the set before): the
instances an earlier pull brought are replaced, and those drawn in Panelbeater are kept. Both
mark the project's labels as changed, so the self-training checks run on commit as for any
save (``jobs.autotrain``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.config import env_name, get_settings
from core.records import ImageRecord, LabelResolver
from db.models import (
    AnnotationSource,
    Image,
    ImageStatus,
    Job,
    JobStatus,
    Project,
    User,
)
from exports import label_studio
from exports.errors import ImageReadError
from exports.image_files import image_info_from_bytes
from services.accounts import users as user_service
from services.accounts.projects import project_taxonomy
from services.accounts.users import Permission
from services.errors import Invalid
from services.integrations.label_studio_backend import ls_project_id, saved_label_map
from services.integrations.ls_config import read_config
from services.integrations.ls_images import ImageFetcher, ImageFetchError

#: The events that pull annotations; others are answered and ignored.
PULL_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "START_TRAINING")


@dataclass
class Pull:
    """What a webhook names: the event, the Label Studio project, its config when the
    webhook carries it, and the task (None: every annotated task)."""

    event: str
    ls_project: str
    label_config: str | None
    task_id: int | None


@dataclass
class PullReport:
    event: str
    tasks: int = 0
    images_added: int = 0
    images_updated: int = 0
    instances_added: int = 0
    messages: list[str] = field(default_factory=list)
    #: Why a round started or not (:func:`round_due`), set by the caller.
    round: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def read_webhook(body: Any) -> Pull | None:
    """The pull a webhook body asks for; None for an event that pulls nothing. Invalid names
    the field of a malformed body."""
    if not isinstance(body, dict) or not isinstance(body.get("action"), str):
        raise Invalid("the webhook body must be a JSON object with an 'action'")
    event = body["action"]
    if event not in PULL_EVENTS:
        return None
    project = body.get("project")
    if not isinstance(project, dict) or "id" not in project:
        raise Invalid("project must be the Label Studio project object, with its 'id'")
    task_id = None
    if event != "START_TRAINING":
        task = body.get("task")
        raw = task.get("id") if isinstance(task, dict) else None
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise Invalid(f"task.id: an {event} webhook names its task by id")
        task_id = raw
    config = project.get("label_config")
    return Pull(
        event,
        ls_project_id(project["id"], "project.id"),
        config if isinstance(config, str) else None,
        task_id,
    )


def _client():
    from label_studio_sdk import LabelStudio

    settings = get_settings()
    if not (settings.label_studio_url and settings.label_studio_api_key):
        raise Invalid(
            f"pulling annotations needs Label Studio's address and an API key: set "
            f"{env_name('label_studio_url')} and {env_name('label_studio_api_key')} (or "
            "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)"
        )
    return LabelStudio(base_url=settings.label_studio_url, api_key=settings.label_studio_api_key)


def fetch_tasks(pull: Pull) -> tuple[list[dict[str, Any]], str, list[str]]:
    """The tasks a pull names (as Label Studio's API returns them, with annotations), the
    project's labelling config, and notes (tasks left for a later pull)."""
    client = _client()
    config = pull.label_config or client.projects.get(id=int(pull.ls_project)).label_config
    limit = get_settings().ls_backend_max_pull_tasks
    notes: list[str] = []
    if pull.task_id is not None:
        tasks = [client.tasks.get(id=str(pull.task_id)).model_dump(mode="json")]
    else:
        tasks = []
        for t in client.tasks.list(
            project=int(pull.ls_project), fields="all", only_annotated=True, page_size=100
        ):
            if len(tasks) == limit:
                notes.append(
                    f"more than {limit:,} annotated tasks: the first {limit:,} were pulled "
                    f"(setting {env_name('ls_backend_max_pull_tasks')})"
                )
                break
            tasks.append(t.model_dump(mode="json"))
    return tasks, config, notes


def _keep_photo(fetcher: ImageFetcher, task: dict, image_key: str, where: str) -> Path:
    """The task's photo, read through Label Studio and kept in the media folder by sha256."""
    from core.files import write_bytes_atomic

    url = (task.get("data") or {}).get(image_key)
    got = fetcher.fetch(
        url, where=f"{where}.data.{image_key}", sha256=(task.get("data") or {}).get("sha256")
    )
    try:
        info = image_info_from_bytes(got.data, str(url).rsplit("/", 1)[-1])
    except ImageReadError as e:
        raise ImageFetchError(f"{where}: {e}") from None
    suffix = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
    media = get_settings().media_dir
    target = media / f"{got.sha256}{suffix.get(info.format, '.img')}"
    if not target.exists():
        write_bytes_atomic(target, got.data)
    return target


def author(ls_project: str) -> str:
    """The author of the instances a pull from this Label Studio project stores."""
    return f"import:label-studio project {ls_project}"


def pull_annotations(
    session: Session, project: Project, pull: Pull, fetcher: ImageFetcher
) -> PullReport:
    """Pull the tasks ``pull`` names into the store (see the module docstring); returns
    what was added and updated. Invalid for a config whose labels map to no class."""
    from services.data_io.imports import store_photo

    report = PullReport(pull.event)
    tasks, config, report.messages = fetch_tasks(pull)
    taxonomy = project_taxonomy(project)
    mapping = read_config(config, taxonomy, saved_label_map(pull.ls_project))
    names = {label: taxonomy.by_id(cid).name for label, cid in mapping.labels().items()}
    kept: list[dict[str, Any]] = []
    paths: dict[Any, Path] = {}
    for task in tasks:
        where = f"task {task.get('id')}"
        if not any(not a.get("was_cancelled") for a in task.get("annotations") or []):
            continue
        try:
            paths[task.get("id")] = _keep_photo(fetcher, task, mapping.image_key, where)
        except ImageFetchError as e:
            report.messages.append(f"{e}; the task was left out")
            continue
        kept.append(task)
    report.tasks = len(kept)
    if not kept:
        return report
    source = author(pull.ls_project).removeprefix("import:")
    records, parsed = label_studio.parse(kept, LabelResolver(taxonomy, names), source=source)
    for rec in records:
        rec.meta["path"] = str(paths[rec.meta["label_studio_id"]])
    known = {
        img.sha256: img for img in session.exec(select(Image).where(Image.project_id == project.id))
    }
    fresh, updates = [], []
    for rec in records:
        sha = Path(rec.meta["path"]).stem
        (updates if sha in known else fresh).append((rec, known.get(sha)))
    if fresh:
        out = store_photo(
            session,
            project,
            [r for r, _ in fresh],
            parsed,
            get_settings().media_dir,
            source,
            AnnotationSource.imported,
            None,
        )
        report.images_added, report.instances_added = out.images_added, out.instances_added
        report.messages += out.messages
    else:
        report.messages += parsed.notes + parsed.skipped + parsed.failed
    for rec, image in updates:
        report.images_updated += _replace(session, image, rec, author(pull.ls_project), report)
    return report


def _replace(session: Session, image: Image, rec: ImageRecord, who: str, report: PullReport) -> int:
    """Save ``rec``'s instances on a stored photo in place of the ones earlier pulls brought;
    1 when that changed the photo, else 0."""
    from services.labelling.readers import annotation_to_dict, current_annotations
    from services.labelling.saves import save_annotations
    from services.labelling.statuses import set_status
    from services.labelling.validation import AnnotationInvalid

    rows = current_annotations(session, image.id)
    ours = [a for a in rows if a.author == who]
    sx, sy = image.width / rec.width, image.height / rec.height
    incoming = [
        {
            "class_id": int(cid),
            "geometry": shape.scaled(sx, sy).to_json(),
            "attributes": dict(attrs or {}),
            "source": AnnotationSource.imported.value,
        }
        for shape, cid, attrs in zip(
            rec.instances.shapes, rec.instances.class_ids, rec.instances.attributes, strict=True
        )
    ]
    before = sorted((a.class_id, str(a.geometry)) for a in ours)
    after = sorted((i["class_id"], str(i["geometry"])) for i in incoming)
    if before == after:
        return 0
    others = [annotation_to_dict(a) for a in rows if a.author != who]
    try:
        save_annotations(
            session,
            image_id=image.id,
            expected_version=image.annotation_version,
            annotations=others + incoming,
            author=who,
            reason="label-studio",
        )
    except AnnotationInvalid as e:
        report.messages.append(f"{image.file_name}: {e}; its Label Studio labels were not saved")
        return 0
    if incoming and image.status in (ImageStatus.new, ImageStatus.in_progress):
        set_status(session, image_id=image.id, status=ImageStatus.labelled, author=who)
    return 1


# -- the lead's rule ----------------------------------------------------------------


def round_due(session: Session, project: Project, user: User) -> tuple[bool, str]:
    """Whether a webhook from ``user`` starts a retraining round now, and why (or why not):
    ``ls_backend_round_every`` more labelled training photos than the last round trained on,
    no round queued or running, and a user who may retrain."""
    from services.training.registry import training_snapshot

    every = get_settings().ls_backend_round_every
    if every == 0:
        return False, f"webhooks start no round ({env_name('ls_backend_round_every')}=0)"
    if not user_service.can(user, Permission.retrain):
        return False, (
            f"no round: {user.username} ({user.role.value}) may not retrain; connect the "
            "backend with a lead's or an admin's name for webhooks to start rounds"
        )
    rounds = session.exec(
        select(Job).where(Job.project_id == project.id, Job.kind == "round").order_by(Job.id.desc())
    ).all()
    busy = next((j for j in rounds if j.status in (JobStatus.queued, JobStatus.running)), None)
    if busy is not None:
        return False, f"no round: round job {busy.id} is {busy.status.value}"
    last = next((j for j in rounds if j.status == JobStatus.completed), None)
    then = int((last.result or {}).get("labelled", 0)) if last is not None else 0
    now = training_snapshot(session, project)["count"]
    if now - then < every:
        return False, (
            f"no round: {now - then} more labelled training photo(s) than the last round "
            f"trained on; the rule asks for {every} ({env_name('ls_backend_round_every')})"
        )
    return (
        True,
        f"a round starts: {now} labelled training photos, {now - then} since the last round",
    )
