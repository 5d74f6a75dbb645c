"""Label Studio's ML backend for one Panelbeater project: who may call it, ``/setup``,
``/predict`` (pre-annotation, and the assistance when a person prompts) and the model
version Label Studio records.

Label Studio's protocol (the ``label-studio-ml`` package speaks it too):

- ``/setup`` gets the project's labelling config (``schema``) and the form's ``extra_params``;
  the answer is ``{"model_version"}``. The labels are mapped onto the taxonomy here
  (``ls_config``), so a label that maps to nothing is refused when the backend is connected.
- ``/predict`` gets ``tasks``, ``label_config``, ``project`` (``"<id>.<created>"``) and
  ``params.context``; the answer is ``{"results": [...]}``, one ``{"result", "score",
  "model_version"}`` per task, in the tasks' order (Label Studio drops a batch whose count
  differs). A context with keypoint or rectangle regions is a person's prompt: the answer is
  the assistance's shape for it (:func:`interactive`).

Label Studio gives up on a request after 100 s: a batch stops starting tasks once the next
one would end past ``ls_backend_time_budget_s``, and the tasks left get an empty result under
the model version ``<version> (unfinished)``; Label Studio asks again for those, since it skips
only tasks holding a prediction of the current version. The answer says so in ``partial``,
``done`` and ``message``. A task whose image cannot be read gets an empty result under
``<version> (failed)`` and its sentence in ``errors``; when every task fails, the first
sentence is raised instead, so Label Studio shows it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session

from core.config import env_name, get_settings
from core.instances import Instances
from db.models import ModelVersion, Project, User
from exports.errors import ImageReadError
from exports.image_files import rgb_from_bytes
from services.accounts import users as user_service
from services.accounts.projects import is_member, project_taxonomy
from services.errors import Invalid, TooLarge
from services.integrations.ls_config import LabelMapping, label_map_from, read_config
from services.integrations.ls_images import ImageFetcher, ImageFetchError
from services.integrations.ls_regions import context_prompt, instances_to_regions, shape_regions

#: The model version Label Studio records while no stage pre-annotates.
NO_MODEL = "panelbeater (no promoted pre-annotating model)"

# -- who may call ---------------------------------------------------------------------

#: Basic-auth credentials verified lately: HMAC -> (user id, until). scrypt costs about half
#: a second a check, and Label Studio sends the form's credentials with every request.
_verified: OrderedDict[str, tuple[int, float]] = OrderedDict()
_verified_lock = threading.Lock()
_VERIFIED_MAX = 64
_secret = secrets.token_bytes(32)


def _credential_key(user: User, password: str) -> str:
    msg = f"{user.id}\0{user.password_hash}\0{password}".encode()
    return hmac.new(_secret, msg, hashlib.sha256).hexdigest()


def _basic(session: Session, encoded: str, address: str | None) -> User | None:
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = text.partition(":")
    if not sep:
        return None
    user = user_service.get_user(session, username)
    ttl = get_settings().ls_backend_auth_cache_s
    if user is not None and user.active and ttl > 0:
        key = _credential_key(user, password)
        with _verified_lock:
            hit = _verified.get(key)
            if hit is not None and hit[0] == user.id and hit[1] > time.monotonic():
                return user
    user = user_service.authenticate(session, username, password, address=address)
    if user is not None and ttl > 0:
        with _verified_lock:
            _verified[_credential_key(user, password)] = (user.id, time.monotonic() + ttl)
            while len(_verified) > _VERIFIED_MAX:
                _verified.popitem(last=False)
    return user


def caller(
    session: Session, project: Project, authorization: str, *, address: str | None = None
) -> User | None:
    """The Panelbeater user an ``Authorization`` header names, when they may work in
    ``project``, else None (the route answers 401). ``Basic`` carries a user's name and
    password (Label Studio's ML backend form); ``Bearer`` a token from ``POST /api/login``
    (what a Label Studio webhook's headers can carry). Failed passwords are throttled as
    sign-ins are (TooManyAttempts)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() == "basic":
        user = _basic(session, value, address)
    elif scheme.lower() == "bearer":
        user = user_service.user_for_token(session, value.strip())
    else:
        return None
    if user is None or not is_member(session, user, project):
        return None
    return user


# -- setup ------------------------------------------------------------------------------


def ls_project_id(project: Any, field: str = "project") -> str:
    """Label Studio's project id from its ``"<id>.<created>"`` (or a plain id)."""
    text = str(project if project is not None else "")
    head = text.split(".", 1)[0]
    if not head.isdigit():
        raise Invalid(
            f"{field} must be Label Studio's project id, like '3.1700000000', not {text!r}"
        )
    return head


def _maps_file(ls_project: str) -> Path:
    settings = get_settings()
    root = settings.ls_backend_cache_dir or (settings.cache_dir / "label_studio")
    return Path(root) / "label_maps" / f"{ls_project}.json"


def saved_label_map(ls_project: str) -> dict[str, str]:
    """The label map the last ``/setup`` of a Label Studio project gave ({} before any)."""
    try:
        return label_map_from({"label_map": json.loads(_maps_file(ls_project).read_text())})
    except (OSError, ValueError, Invalid):
        return {}


def setup(session: Session, project: Project, body: Any) -> dict[str, str]:
    """Check the config's labels against the taxonomy, keep the form's label map for this
    Label Studio project, and answer the model version. Invalid names what is wrong."""
    from core.files import write_text_atomic

    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object with project, schema and extra_params")
    ls_project = ls_project_id(body.get("project"))
    label_map = label_map_from(body.get("extra_params"))
    read_config(body.get("schema"), project_taxonomy(project), label_map)
    write_text_atomic(_maps_file(ls_project), json.dumps(label_map))
    return {"model_version": model_version(session)}


# -- models ---------------------------------------------------------------------------


def pre_annotating_versions(session: Session) -> list[ModelVersion]:
    """The promoted versions of the pre-annotating stages (parts, damage) that may
    pre-annotate (``services.training.bar.may_pre_annotate``), by stage name."""
    from models.registry import pre_annotating_stages
    from services.training.bar import may_pre_annotate
    from services.training.registry import current

    out = []
    for stage in pre_annotating_stages():
        mv = current(session, stage)
        if mv is not None and may_pre_annotate(mv).passes:
            out.append(mv)
    return out


def model_version(session: Session) -> str:
    """What Label Studio records as the backend's model version: the promoted versions that
    pre-annotate, joined (a promotion changes it, so Label Studio asks again)."""
    names = [mv.name for mv in pre_annotating_versions(session)]
    return "+".join(names) if names else NO_MODEL


#: Loaded stages by (version id, file sha256); a promotion loads the new one.
_models: dict[tuple[int, str], Any] = {}
_models_lock = threading.Lock()


def _loaded(mv: ModelVersion, taxonomy) -> Any:
    from services.training.model_runs import load_version

    key = (mv.id, mv.sha256 or "")
    with _models_lock:
        if key not in _models:
            for old in [k for k in _models if k[0] == mv.id or len(_models) >= 8]:
                _models.pop(old, None)
            _models[key] = load_version(mv, taxonomy, get_settings().device)
        return _models[key]


def predict_instances(
    session: Session, project: Project, pixels: np.ndarray
) -> tuple[Instances, list[str]]:
    """Every pre-annotating promoted version's instances on ``pixels`` (HWC uint8 RGB), and
    the version name of each; classes a version withholds (below their bar) left out."""
    from services.training.bar import withheld_classes

    taxonomy = project_taxonomy(project)
    parts: list[Instances] = []
    names: list[str] = []
    for mv in pre_annotating_versions(session):
        inst = _loaded(mv, taxonomy).predict([pixels])[0].instances
        withheld = withheld_classes(mv)
        if withheld and len(inst):
            inst = inst[~np.isin(inst.class_ids, list(withheld))]
        parts.append(inst)
        names += [mv.name] * len(inst)
    kept = [p for p in parts if len(p)]
    if not kept:
        return Instances.empty(), []
    return (kept[0] if len(kept) == 1 else Instances.concat(kept)), names


# -- predict ------------------------------------------------------------------------------


@dataclass
class TaskImage:
    data: bytes
    sha256: str
    name: str
    width: int
    height: int

    def pixels(self, max_side: int | None = None) -> np.ndarray:
        return rgb_from_bytes(self.data, self.name, max_side=max_side)


def task_image(fetcher: ImageFetcher, task: Any, mapping: LabelMapping, where: str) -> TaskImage:
    """The image of one task, read through Label Studio (ImageFetchError naming ``where``)."""
    from exports.image_files import image_info_from_bytes

    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        raise Invalid(f"{where} must be an object with a 'data' object")
    url = data.get(mapping.image_key)
    got = fetcher.fetch(url, where=f"{where}.data.{mapping.image_key}", sha256=data.get("sha256"))
    name = str(url).rsplit("/", 1)[-1][:100] or got.sha256
    try:
        info = image_info_from_bytes(got.data, name)
    except ImageReadError as e:
        raise ImageFetchError(f"{where}: {e}") from None
    return TaskImage(got.data, got.sha256, name, info.width, info.height)


def _check_tasks(tasks: Any) -> list[Any]:
    if not isinstance(tasks, list) or not tasks:
        raise Invalid("tasks must be a non-empty list of Label Studio tasks")
    limit = get_settings().ls_backend_max_tasks
    if len(tasks) > limit:
        raise TooLarge(
            f"tasks: {len(tasks):,} tasks in one request is more than the limit of {limit:,} "
            f"(setting {env_name('ls_backend_max_tasks')}); ask for fewer at a time"
        )
    return tasks


def predict(
    session: Session,
    project: Project,
    body: Any,
    fetcher: ImageFetcher,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Answer Label Studio's ``/predict`` (see the module docstring)."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object with tasks, label_config and project")
    tasks = _check_tasks(body.get("tasks"))
    params = body.get("params") if isinstance(body.get("params"), dict) else {}
    ls_project = ls_project_id(body.get("project"))
    mapping = read_config(
        body.get("label_config"), project_taxonomy(project), saved_label_map(ls_project)
    )
    prompt = context_prompt(params.get("context"))
    if prompt is not None:
        return interactive(session, project, tasks[0], mapping, prompt, fetcher)
    return pre_annotate(session, project, tasks, mapping, fetcher, clock=clock)


def pre_annotate(
    session: Session,
    project: Project,
    tasks: list[Any],
    mapping: LabelMapping,
    fetcher: ImageFetcher,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """One prediction per task from the promoted pre-annotating versions, within the time
    budget (see the module docstring)."""
    budget = get_settings().ls_backend_time_budget_s
    version = model_version(session)
    start = clock()
    slowest = 0.0
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    done = 0
    for i, task in enumerate(tasks):
        began = clock()
        if began - start + slowest > budget:
            break
        where = f"tasks[{i}]" + (
            f" (task {task['id']})" if isinstance(task, dict) and "id" in task else ""
        )
        try:
            image = task_image(fetcher, task, mapping, where)
            inst, names = predict_instances(session, project, image.pixels())
        except (ImageFetchError, ImageReadError) as e:
            errors.append(str(e))
            results.append({"result": [], "score": 0.0, "model_version": f"{version} (failed)"})
        else:
            regions = instances_to_regions(
                inst, mapping, image.width, image.height, model_versions=names
            )
            scores = [r["score"] for r in regions]
            results.append(
                {
                    "result": regions,
                    "score": float(np.mean(scores)) if scores else 0.0,
                    "model_version": version,
                }
            )
            done += 1
        slowest = max(slowest, clock() - began)
    if errors and len(errors) == len(results) == len(tasks):
        raise ImageFetchError(errors[0])
    answer: dict[str, Any] = {"results": results, "model_version": version}
    left = len(tasks) - len(results)
    if left:
        results += [{"result": [], "score": 0.0, "model_version": f"{version} (unfinished)"}] * left
        answer.update(
            partial=True,
            done=done,
            message=(
                f"{done} of {len(tasks)} tasks predicted in {clock() - start:.0f} s; the other "
                f"{left} would have run past the time budget of {budget:g} s (setting "
                f"{env_name('ls_backend_time_budget_s')}), so they were left under the model "
                f"version '{version} (unfinished)': retrieve predictions again for them"
            ),
        )
    if errors:
        answer["errors"] = errors
    return answer


def interactive(
    session: Session,
    project: Project,
    task: Any,
    mapping: LabelMapping,
    prompt,
    fetcher: ImageFetcher,
) -> dict[str, Any]:
    """The assistance's shape for a person's clicks and box on one task, as regions of the
    class their label maps to (a polygon when the shape is one outline)."""
    from services.training.assist import assist_pixels

    if prompt.label is None or mapping.class_of(prompt.label) is None:
        raise Invalid(
            f"params.context.result: the prompt's label {prompt.label!r} maps to no taxonomy "
            "class; use a KeyPointLabels or RectangleLabels label that one of the config's "
            "PolygonLabels or BrushLabels labels also maps to"
        )
    class_id = mapping.class_of(prompt.label)
    image = task_image(fetcher, task, mapping, "tasks[0]")
    sx, sy = image.width / prompt.width, image.height / prompt.height
    answer = assist_pixels(
        session,
        project,
        image.sha256,
        image.pixels,
        image.width,
        image.height,
        points=[[x * sx, y * sy] for x, y in prompt.points],
        labels=prompt.labels,
        box=None
        if prompt.box is None
        else [v * s for v, s in zip(prompt.box, (sx, sy, sx, sy), strict=True)],
    )
    version = f"assist:{answer.backend}"
    regions: list[dict[str, Any]] = []
    if answer.shape is not None:
        regions, note = shape_regions(
            answer.shape, class_id, mapping, image.width, image.height, rid="pb_assist"
        )
        text = [f"{version}, score {answer.score:.3f}"] + [n for n in (note, answer.note) if n]
        for r in regions:
            r.update(score=float(answer.score), model_version=version, meta={"text": text})
    return {
        "results": [{"result": regions, "score": float(answer.score), "model_version": version}],
        "model_version": version,
    }
