"""One settings object, read from ``PANELBEATER_*`` environment variables.

Use :func:`get_settings`; the CLI and tests replace it with :func:`configure`. A message
that tells the user which variable to set names it with :func:`env_name`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.presets import Preset

#: Bytes one character of a user name or password may take in a sign-in's JSON: a \uXXXX
#: escape, what most JSON writers send for non-ASCII (raw UTF-8 takes at most 4).
LOGIN_JSON_BYTES_PER_CHAR = 6
#: The rest of ``{"username": "", "password": ""}``, with room for spaces.
LOGIN_JSON_OVERHEAD_BYTES = 64


class Settings(BaseSettings):
    # populate_by_name: fields that also take a foreign variable's name (validation_alias)
    # still take their own name in configure(**values)
    model_config = SettingsConfigDict(
        env_prefix="PANELBEATER_", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Path("panelbeater-data")
    #: SQLAlchemy URL; empty means SQLite at ``<data_dir>/panelbeater.db``.
    database_url: str = ""
    taxonomy_path: Path | None = None
    project_name: str = "default"

    host: str = "127.0.0.1"
    port: int = 7860
    #: Addresses of a TLS proxy in front of the app (comma-separated, e.g. "127.0.0.1"),
    #: whose X-Forwarded-For, -Proto and -Host are trusted: the client's address then
    #: counts for login throttling, and the sign-in cookie is marked Secure. Empty: none;
    #: every other client's forwarded headers are dropped (``api.hosts``).
    forwarded_allow_ips: str = ""
    #: The names this server answers to (comma-separated; ``*.example.com`` also takes its
    #: subdomains, ``*`` any name), with ``host`` when it names one interface: a request whose
    #: Host or believed X-Forwarded-Host is another gets 400, so a forged name never reaches
    #: the links the UI writes. Behind a proxy or on a LAN, list the name people type.
    allowed_hosts: str = "localhost,127.0.0.1,::1"

    #: ``auto`` picks CUDA when present.
    device: Literal["auto", "cpu", "cuda"] = "auto"

    #: Assistance back end: ``auto`` uses SAM when a checkpoint is configured, else the
    #: best weight-free back end.
    assist_backend: str = "auto"
    sam_checkpoint: Path | None = None
    sam_model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    mobile_sam_checkpoint: Path | None = None

    #: Assistance that trains itself (``services.training.assist_training``): after imports and saves,
    #: once a project holds ``assist_autotrain_min_polygons`` labelled polygons and again each
    #: time they grow by ``assist_autotrain_growth`` (0.5: by half), a background job trains
    #: assist_net (preset ``assist_autotrain_config``; ``assist_autotrain_epochs`` unset: the
    #: preset's) and promotes it only when it beats the current back end on held-out parts.
    #: ``PANELBEATER_ASSIST_AUTOTRAIN=false`` turns it off.
    assist_autotrain: bool = True
    #: The auto-training checks (``jobs.autotrain``) count a project's labelled work, which
    #: takes longer as the project grows: a project's commits that change labels run them at
    #: most once per this many seconds; a change inside the interval is checked at its end.
    #: 0 checks on every commit.
    autotrain_check_interval_s: float = Field(default=5.0, ge=0)
    assist_autotrain_min_polygons: int = Field(default=200, ge=1)
    assist_autotrain_growth: float = Field(default=0.5, gt=0)
    assist_autotrain_config: Preset = Preset.small
    assist_autotrain_epochs: int | None = Field(default=None, ge=1)

    #: The part segmenter that trains itself (``services.training.part_seg_training``): after imports
    #: and saves, once a project with no promoted ``part_seg`` holds
    #: ``part_seg_autotrain_min_photos`` labelled photos (and, after a run that lost, each time
    #: they grow by ``part_seg_autotrain_growth``), a background job trains part_seg (preset
    #: ``part_seg_autotrain_config``; unset: ``gpu`` when the worker's device is a CUDA GPU,
    #: else ``cpu``) for ``part_seg_time_budget_s`` seconds and promotes it
    #: only when its held-out mask AP50 beats the promoted YOLO part model's, when there is one.
    #: ``PANELBEATER_PART_SEG_AUTOTRAIN=false`` turns it off.
    part_seg_autotrain: bool = True
    part_seg_autotrain_min_photos: int = Field(default=50, ge=1)
    part_seg_autotrain_growth: float = Field(default=0.5, gt=0)
    part_seg_autotrain_config: Literal["tiny", "cpu", "gpu", "small", "base"] | None = None
    part_seg_time_budget_s: float = Field(default=720.0, gt=0)

    #: The damage segmenter that trains itself (``services.training.damage_seg_training``): once
    #: a project with no promoted ``damage_seg`` holds ``damage_seg_autotrain_min_photos``
    #: labelled photos with damage (and, after a run that lost, each time they grow by
    #: ``damage_seg_autotrain_growth``), a background job trains damage_seg (preset
    #: ``damage_seg_autotrain_config``; unset: ``gpu`` on a CUDA worker, else ``cpu``) for
    #: ``damage_seg_time_budget_s`` seconds and promotes it only when its held-out damage mask
    #: AP50 beats the promoted damage model's (ALBERT, Mask R-CNN), when there is one.
    #: ``PANELBEATER_DAMAGE_SEG_AUTOTRAIN=false`` turns it off.
    damage_seg_autotrain: bool = True
    damage_seg_autotrain_min_photos: int = Field(default=50, ge=1)
    damage_seg_autotrain_growth: float = Field(default=0.5, gt=0)
    damage_seg_autotrain_config: Literal["tiny", "cpu", "gpu", "small", "base"] | None = None
    damage_seg_time_budget_s: float = Field(default=2700.0, gt=0, le=3600)
    #: Semi-supervised rounds (``services.training.pseudo_labels``): a round also trains each
    #: stage on the confident pending predictions of its promoted version (else its promoted
    #: rival's) on photos that are neither labelled nor reviewed nor held out, marked as
    #: pseudo-labels; they are never written as annotations, so never exported nor shown as
    #: accepted, and the held-out measurement never sees them. Off by default.
    pseudo_labels: bool = False
    #: the score a prediction must reach to become a pseudo-label
    pseudo_label_min_score: float = Field(default=0.9, gt=0, le=1)
    #: class name -> its own minimum score over ``pseudo_label_min_score``, e.g.
    #: ``{"wheel": 0.8, "front_bumper": 0.95}`` (a class the held-out figures show weak wants a
    #: higher one); a name outside the project's taxonomy is refused when a round starts
    pseudo_label_class_scores: dict[str, float] = Field(default_factory=dict)
    #: stage -> the held-out minimum it must reach to pre-annotate, over the stage's own
    #: (``StageBase.pre_annotate_minimum``), e.g. ``{"yolo_seg": 0.3}``; 0 turns it off
    pre_annotate_minimum: dict[str, float] = Field(default_factory=dict)

    #: The part classifier's ResNet34 on the CPU: false forces fp32, true int8 (about 4x
    #: faster; needs the calibration training stores); unset: as the model was trained.
    cpu_int8: bool | None = None

    #: Threads torch runs CPU operators on (training, SAM embeddings, the part classifier);
    #: unset: torch's own choice (about one per core). Applied once when a process starts
    #: (``models.runtime.apply_process_settings``).
    torch_threads: int | None = Field(default=None, ge=1)
    #: the job worker's CPU priority (``nice``): background training (rounds, the assistants'
    #: and part_seg's self-training) yields the CPU to the web server's requests
    worker_nice: int = Field(default=10, ge=0, le=19)

    #: Task queue: empty means Huey on SQLite in the data dir; ``redis://...`` for Redis.
    queue_url: str = ""
    start_worker: bool = True

    #: Bearer tokens expire after this many hours.
    token_ttl_hours: float = 12.0

    #: Queue leases (``services.labelling.leases``): a photo handed out by ``/api/queue/next`` is nobody
    #: else's for this many seconds, renewed by each save; the hand-out scans the queue this
    #: many photos at a time for a free one.
    lease_ttl_seconds: float = Field(default=900.0, gt=0)
    lease_scan_batch: int = Field(default=64, ge=1)

    #: How many recently picked classes are kept per user (``services.accounts.recent_classes``);
    #: the workspace's keys 1-9 pick the first nine.
    recent_classes_max: int = Field(default=9, ge=1, le=100)

    #: Request bodies larger than these many bytes are refused with 413 before they are read,
    #: whether declared by Content-Length or streamed (``api.middleware.BodyLimitMiddleware``;
    #: which route has which limit: ``app.body_limits``). ``max_request_bytes``: the routes
    #: that take files (``/api/images/upload``, ``/api/imports``, the UI's own uploads);
    #: ``max_login_body_bytes``: ``/api/login``, a user name and a password;
    #: ``max_json_body_bytes``: every other route (JSON: an annotation save is the largest).
    max_request_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_login_body_bytes: int = Field(default=2048, gt=0)
    max_json_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    #: Longest user name and password, in characters (``services.accounts.users``). A password
    #: needs 8 characters at least, so its limit may not be lower.
    max_username_chars: int = Field(default=64, ge=1)
    max_password_chars: int = Field(default=128, ge=8)
    #: Image files larger than this many bytes are refused (imports, uploads, reads).
    max_image_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    #: Images with more pixels than this (width x height) are refused before they are
    #: decoded, so a decompression bomb is a reported bad file; also Pillow's own limit.
    max_image_pixels: int = Field(default=100_000_000, gt=0)
    #: Label files an import reads from inside a dataset (YOLO label and list files).
    max_label_file_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    #: A zip uploaded as a label file (a YOLO dataset through ``POST /api/imports`` or the
    #: dashboard): at most this many bytes once unpacked, and at most
    #: ``max_archive_members`` entries, so a zip bomb is refused before it is unpacked.
    max_archive_unpacked_bytes: int = Field(default=2 * 1024 * 1024 * 1024, gt=0)
    max_archive_members: int = Field(default=100_000, gt=0)
    #: Label Studio exports (``services.data_io.exports``): each task's image URL is the
    #: photo's path below ``label_studio_document_root`` (unset: the deepest folder that holds
    #: every exported photo, named in the export's README), after ``label_studio_image_url``
    #: when that is set (a web server that serves the folder), else as Label Studio's own
    #: ``/data/local-files/?d=<path>``, which Label Studio serves when started with
    #: ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
    #: ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to the same folder.
    label_studio_document_root: Path | None = None
    label_studio_image_url: str = ""
    #: The Label Studio ML backend (``panelbeater ls-backend``,
    #: ``services.integrations.label_studio_backend``). ``label_studio_url`` and
    #: ``label_studio_api_key``: the Label Studio server and an API key (a legacy token or a
    #: personal access token) the backend reads task images and pulls annotations with; also
    #: read from ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``, the names Label Studio's own
    #: backends use. The key is sent only to that server.
    label_studio_url: str = Field(
        default="",
        validation_alias=AliasChoices("PANELBEATER_LABEL_STUDIO_URL", "LABEL_STUDIO_URL"),
    )
    label_studio_api_key: str = Field(
        default="",
        validation_alias=AliasChoices("PANELBEATER_LABEL_STUDIO_API_KEY", "LABEL_STUDIO_API_KEY"),
    )
    #: Tasks one ``/predict`` request may carry (more is refused with 413, naming the field);
    #: bytes one task image may have (a larger one fails its task, read no further); seconds a
    #: batch may run before it answers with the tasks done so far (Label Studio gives up after
    #: 100 s, ``ML_TIMEOUT_PREDICT``); seconds one image download may take.
    ls_backend_max_tasks: int = Field(default=100, gt=0)
    ls_backend_max_image_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    ls_backend_time_budget_s: float = Field(default=80.0, gt=0)
    ls_backend_fetch_timeout_s: float = Field(default=30.0, gt=0)
    #: Task images fetched from Label Studio, kept by sha256 (unset: ``<data_dir>/cache/
    #: label_studio``), at most ``ls_backend_cache_bytes`` together (the oldest go first).
    ls_backend_cache_dir: Path | None = None
    ls_backend_cache_bytes: int = Field(default=2 * 1024 * 1024 * 1024, gt=0)
    #: Seconds a Label Studio basic-auth password, once checked, is taken again without
    #: another scrypt check (Label Studio sends it with every request); 0: check every time.
    #: A change of the user's password ends it at once.
    ls_backend_auth_cache_s: float = Field(default=300.0, ge=0)
    #: Tasks one webhook pulls from Label Studio (a START_TRAINING pulls the project's
    #: annotated tasks; more are left for the next one, and the answer says so).
    ls_backend_max_pull_tasks: int = Field(default=10_000, gt=0)
    #: The lead's rule for Label Studio webhooks: after a webhook's annotations are pulled in,
    #: a retraining round starts once the project holds this many more labelled training
    #: photos than the last round trained on, no round is queued or running, and the user the
    #: webhook authenticated as may retrain (a lead or an admin). 0: webhooks never start one.
    ls_backend_round_every: int = Field(default=50, ge=0)
    #: Points in one polygon (its outline and holes together), and in one annotation's
    #: parts together.
    max_vertices_per_polygon: int = Field(default=10_000, gt=0)
    #: Annotated instances on one photo, and their polygons (each part and each hole counts).
    max_polygons_per_image: int = Field(default=1_000, gt=0)
    #: Points (clicks) in one assistance request (``POST /api/images/{id}/assist``): a person
    #: clicks a handful; two million cost 15 s of CPU.
    max_assist_points: int = Field(default=1_000, gt=0)
    #: Labelled photos per round whose actions the dashboard counts with the simulated
    #: annotator (``services.dashboard.effort``): each costs a few assistance calls once
    #: (the counts are cached), so a large project is sampled.
    effort_photos_per_round: int = Field(default=20, ge=1)
    #: Seconds one dashboard refresh may spend counting photos not counted before; the rest
    #: wait for the next refresh (the sentence says how many), so a first look at a large
    #: project never hangs the dashboard.
    effort_count_budget_s: float = Field(default=5.0, ge=0)
    #: Longest review comment or fake-damage note, in characters.
    max_comment_chars: int = Field(default=2_000, gt=0)
    #: Largest ``attributes`` object of one annotation, as JSON text.
    max_attribute_chars: int = Field(default=4_096, gt=0)

    #: Sharp zoom (``services.labelling.tiles``, ``GET /api/images/{id}/region``): the most pixels one
    #: region answer may have (output width x height; about a 4K screen by default), how many
    #: encoded regions and how many decoded full-resolution photos the server keeps in memory
    #: (a decoded 12-MP photo is 36 MB), and the JPEG quality of a region.
    region_max_output_pixels: int = Field(default=4096 * 2304, gt=0)
    region_cache_entries: int = Field(default=64, ge=0)
    region_decoded_photos: int = Field(default=2, ge=0)
    region_jpeg_quality: int = Field(default=90, ge=30, le=100)

    #: Quality checks (``services.review.quality``), the defaults a lead may change per project:
    #: the share of photos labelled independently by ``overlap_annotators`` annotators; the
    #: share of each annotator's queue that is gold photos, and whether an annotator sees the
    #: comparison with gold right after submitting; the IoU at which two instances match; the
    #: quorum q of the consensus (an object is kept when ⌈q·n⌉ annotators drew it); and the
    #: agreement (pooled F1) under which an overlap photo goes to the head of review.
    quality_overlap_share: float = Field(default=0.0, ge=0, le=1)
    quality_overlap_annotators: int = Field(default=2, ge=2, le=20)
    quality_gold_share: float = Field(default=0.05, ge=0, le=1)
    quality_gold_feedback: bool = False
    quality_iou_threshold: float = Field(default=0.5, gt=0, le=1)
    quality_quorum: float = Field(default=0.5, gt=0, le=1)
    quality_low_agreement: float = Field(default=0.7, ge=0, le=1)

    #: The fraud screen (``services.claims.fraud_screen``), which feeds the fraud queue without a
    #: fake-damage model: photos with damage of these severities (comma-separated), or with
    #: a damage polygon whose mean colour differs from the ring around it by more than
    #: ``fraud_colour_distance`` (CIE76 ΔE in Lab), or whose texture (grey levels' median
    #: absolute deviation) is more than ``fraud_texture_ratio`` times the ring's or less than
    #: its inverse, are queued for a check; photos are measured at ``fraud_screen_max_side``
    #: pixels on their long side. With these defaults 7 of 317 genuine damage polygons
    #: (coco_car_damage train, first 60 photos) are queued: 2.2%.
    fraud_severities: str = "severe"
    fraud_colour_distance: float = Field(default=55.0, gt=0)
    fraud_texture_ratio: float = Field(default=8.0, gt=1)
    fraud_screen_max_side: int = Field(default=640, ge=64)

    #: Sign-in throttling (``services.accounts.throttle``): after this many failed sign-ins for one
    #: user name, or from one client address, further attempts are refused for
    #: ``login_lockout_seconds``; each later failure doubles the wait, up to
    #: ``login_lockout_max_seconds``. Failures are forgotten ``login_failure_window_seconds``
    #: after the last one (or after the lockout ends). An address counts more failures
    #: because many people may sign in from behind one office router.
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_lockout_seconds: float = Field(default=60.0, gt=0)
    login_lockout_max_seconds: float = Field(default=3600.0, gt=0)
    login_failure_window_seconds: float = Field(default=900.0, gt=0)

    #: Inspections (``services.claims.inspections``, ``services.claims.alignment``): a return-photo damage
    #: whose IoU with every warped pick-up damage is below ``new_damage_iou`` is new; an
    #: alignment with fewer RANSAC inliers than ``align_min_inliers`` or a confidence below
    #: ``align_min_confidence`` holds nothing, and its damage is ``unverified``. Photos are
    #: aligned at ``align_max_side`` pixels on their long side; ``align_ransac_px`` is the
    #: RANSAC reprojection threshold at that size. A CSV manifest holds at most
    #: ``max_manifest_rows`` rows; a report draws photos at ``report_photo_dpi``.
    new_damage_iou: float = Field(default=0.1, gt=0, le=1)
    align_min_inliers: int = Field(default=12, ge=4)
    align_min_confidence: float = Field(default=0.25, ge=0, le=1)
    align_max_side: int = Field(default=1024, ge=128)
    align_ransac_px: float = Field(default=4.0, gt=0)
    max_manifest_rows: int = Field(default=100_000, gt=0)
    report_photo_dpi: int = Field(default=150, ge=72, le=600)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @model_validator(mode="after")
    def _a_sign_in_fits_its_body_limit(self) -> Settings:
        """The longest user name and password must fit in a sign-in's body, or such a user
        could never sign in: say so at start-up rather than answer 413 at each attempt."""
        chars = self.max_username_chars + self.max_password_chars
        needed = chars * LOGIN_JSON_BYTES_PER_CHAR + LOGIN_JSON_OVERHEAD_BYTES
        if self.max_login_body_bytes < needed:
            raise ValueError(
                f"{env_name('max_login_body_bytes')}={self.max_login_body_bytes} is too small "
                f"for a user name of {self.max_username_chars} and a password of "
                f"{self.max_password_chars} characters ({env_name('max_username_chars')}, "
                f"{env_name('max_password_chars')}): set it to {needed} or more."
            )
        return self

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names_only(cls, v: str) -> str:
        names = [n.strip() for n in v.split(",") if n.strip()]
        wrong = [n for n in names if "/" in n or " " in n]
        if not names or wrong:
            raise ValueError(
                f"{env_name('allowed_hosts')} lists the names this server answers to, "
                f"comma-separated, without scheme or path (e.g. 'labels.example.com,localhost'); "
                f"got {v!r}"
            )
        return v

    @property
    def host_names(self) -> list[str]:
        """:attr:`allowed_hosts` as a list, with :attr:`host` when it names one interface
        (``0.0.0.0`` and ``::`` listen on every interface, and name none)."""
        names = [n.strip() for n in self.allowed_hosts.split(",") if n.strip()]
        if self.host not in ("", "0.0.0.0", "::") and self.host not in names:
            names.append(self.host)
        return names

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
    def weights_dir(self) -> Path:
        """Checkpoints the team brings (``panelbeater weights add``), kept by sha256."""
        return self.data_dir / "weights"

    @property
    def cache_dir(self) -> Path:
        """Embedding caches and display-size image copies."""
        return self.data_dir / "cache"


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` of :class:`Settings`:
    ``env_name("max_image_bytes")`` is ``"PANELBEATER_MAX_IMAGE_BYTES"``.

    Raises ValueError for a name that is no field, so a misspelt setting in a message fails
    where it is written rather than sending the user to a variable nothing reads.
    """
    if field not in Settings.model_fields:
        raise ValueError(f"{field!r} is not a setting; see core.config.Settings")
    return f"{Settings.model_config['env_prefix']}{field}".upper()


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
