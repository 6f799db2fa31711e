"""The one settings object: every knob, read from ``PHOTOMARKER_*`` environment variables.

Embedded default and production differ only here. ``load_settings`` turns a validation failure
into a ``SettingsError`` whose message names the environment variable, so a bad deployment
fails at start-up with a line an operator can act on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.errors import SettingsError

ENV_PREFIX = "PHOTOMARKER_"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "photomarker"


class Settings(BaseSettings):
    """Photomarker's configuration; the README's settings table mirrors these fields."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Where Photomarker keeps its own files (embedded queue, audit database, keys).
    data_dir: Path = Field(default_factory=_default_data_dir)
    # The FHIR server photos are read from and results written to; also the only host
    # whose Binary resources may be fetched.
    fhir_base_url: AnyHttpUrl | None = None
    # Celery broker; empty means the embedded SQLite transport under data_dir.
    broker_url: str | None = None
    # SQLAlchemy URL of the audit store; empty means an SQLite file under data_dir.
    audit_database_url: str | None = None
    # Optional key that turns the audit hash chain into an HMAC chain (tamper needs the key).
    audit_hmac_key: SecretStr | None = None
    # Canonical base for Photomarker's own CodeSystem and identifier systems.
    canonical_base: AnyHttpUrl = AnyHttpUrl("https://photomarker.example.org/fhir")
    # Extra model directory searched before the weights shipped inside the package.
    model_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"

    # Intake limits: checked before any pixel is decoded.
    max_photo_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_photo_pixels: int = Field(default=60_000_000, gt=0)

    # Quality gate thresholds.
    quality_min_side_px: int = Field(default=224, gt=0)
    # Variance of the Laplacian on the long-side-512 grey image; lower is blurrier.
    quality_min_sharpness: float = Field(default=60.0, ge=0)
    # Fraction of pixels at the extremes (≤4 or ≥251) above which the exposure fails.
    quality_max_clipped_fraction: float = Field(default=0.25, gt=0, le=1)
    quality_min_mean_brightness: float = Field(default=40.0, ge=0, le=255)
    quality_max_mean_brightness: float = Field(default=230.0, ge=0, le=255)
    # Fraction of the frame that must look like skin / conjunctiva.
    quality_min_content_fraction: float = Field(default=0.05, gt=0, le=1)

    # Video and photo-series intake (issue 15): limits checked before any frame is decoded.
    video_max_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    video_max_duration_s: float = Field(default=60.0, gt=0)
    # Frames the stream holds (declared, and counted while decoding), not frames sampled.
    video_max_frames: int = Field(default=3600, gt=0)
    # Pixels of one frame (width × height): 4096 × 2160 fits.
    video_max_frame_pixels: int = Field(default=4096 * 2160, gt=0)
    # Frames analysed per second of video, and at most this many per video (spread evenly).
    video_sample_fps: float = Field(default=3.0, gt=0, le=30)
    video_max_sampled_frames: int = Field(default=24, ge=1, le=240)
    # Test-time augmentation on each frame: off by default, the frames themselves are the views.
    video_frame_tta: bool = False
    # Photos in one series (analysed as one lesion).
    series_max_photos: int = Field(default=12, ge=2, le=100)
    # Accumulation: fewer frames passing the gate → retake and abstain; a smaller share of frames
    # agreeing with the accumulated class → abstain (calibrated, see bench/steadiness.py).
    accumulate_min_frames: int = Field(default=3, ge=1)
    accumulate_min_agreement: float = Field(default=0.5, ge=0, le=1)

    # Inference engine. Photos per forward pass (each becomes one input per TTA view and member).
    inference_batch_size: int = Field(default=8, ge=1, le=256)
    # torch intra-op threads on the CPU; 0 = one per core this process may use.
    inference_threads: int = Field(default=0, ge=0)
    # torch.compile the networks (CUDA graphs on a GPU): slower start, faster steady state.
    inference_compile: bool = False
    # Test-time augmentation (flips, 90° rotations, colour jitter) for a mean and a spread.
    inference_tta: bool = True
    # Views per photo when TTA is on: 1 = the photo alone, N = the first N of each model's plan
    # (identity, mirror, rot180, vflip, 90° turns, colour jitter last), capped at what it has;
    # 10 = all of them. One view of a one-member model leaves no spread, so no abstention by
    # spread (the OOD check stays). Default measured with bench/skin.py (README "Test-time views
    # and speed"); models.engine.options.DEFAULT_TTA_VIEWS is the same number.
    inference_tta_views: int = Field(default=10, ge=1)
    # Grad-CAM heat-map overlays beside each model result.
    inference_heatmaps: bool = True
    # Override a manifest's calibrated abstention thresholds; empty = the manifest's own.
    abstain_max_spread: float | None = Field(default=None, gt=0)
    abstain_max_ood: float | None = Field(default=None, gt=0)

    # --- jobs: the API, the queue, the workers ---------------------------------------------------
    # SQLAlchemy URL of the job store (jobs, API tokens, encrypted FHIR credentials); empty means
    # an SQLite file under data_dir. Web and workers must see the same one.
    jobs_database_url: str | None = None
    # Fernet key (url-safe base64 of 32 bytes) that encrypts stored FHIR credentials; empty means
    # a key generated once into data_dir (mode 0600). Production: set it, the same for web and workers.
    credential_key: SecretStr | None = None
    # How long a stored FHIR credential stays usable (a job waiting longer fails, never runs unauthenticated).
    credential_max_age_s: int = Field(default=24 * 3600, gt=0)
    # Redis: seconds before a delivered but unacknowledged message goes to another worker (a dead
    # worker's job comes back after this); keep it above the longest batch.
    broker_visibility_timeout_s: float = Field(default=3600, gt=0)
    # Redis: how often workers look for such messages.
    broker_restore_interval_s: float = Field(default=10, gt=0)
    # Redis: a worker rides out a broker outage this long (reconnecting with backoff, 2 s growing
    # to 30 s between tries); longer, it exits non-zero so its supervisor (compose, systemd) restarts it.
    broker_outage_limit_s: float = Field(default=900, gt=0)
    # Seconds a worker holds the jobs it claimed. A thread renews the lease every third of this while
    # the batch runs, so a killed worker's jobs are free again at most this long after it died.
    job_lease_s: float = Field(default=20, gt=0)
    # How often each worker announces itself and re-sends the jobs of workers that stopped renewing
    # their lease (a killed worker's jobs are taken up within job_lease_s + this).
    worker_heartbeat_s: float = Field(default=5, gt=0)
    # /healthz says "degraded" when no worker has announced itself for this long (jobs still queue).
    worker_missing_after_s: float = Field(default=60, gt=0)
    # Micro-batching: up to this many waiting jobs of one queue go through the models together,
    # waiting at most this long for more to arrive.
    batch_max_jobs: int = Field(default=8, ge=1, le=256)
    batch_max_wait_s: float = Field(default=0.05, ge=0, le=10)
    # FHIR requests from workers: timeout, then retries of 5xx / 429 / timeouts with exponential
    # backoff (Retry-After honoured up to the cap).
    fhir_timeout_s: float = Field(default=30, gt=0)
    fhir_retries: int = Field(default=3, ge=0, le=20)
    fhir_backoff_s: float = Field(default=0.5, ge=0)
    fhir_backoff_max_s: float = Field(default=30, gt=0)
    # When the FHIR server stays unavailable, the job is tried again this many times, waiting
    # job_retry_backoff_s × 2^n (capped at fhir_backoff_max_s × 20), before it fails.
    job_max_retries: int = Field(default=5, ge=0, le=50)
    job_retry_backoff_s: float = Field(default=30, ge=0)
    # Largest API request body; empty means room for a Media carrying max_photo_bytes inline.
    api_max_body_bytes: int | None = Field(default=None, gt=0)

    # Add LOINC 718-7 (blood haemoglobin) to the Hb estimate only when a site asks for it.
    hb_add_loinc_718_7: bool = False
    # Weigh a tumour result with the patient's age and the photo's body site when the package
    # carries a record model (models.tumour.record); off: every tumour result is the photo's alone.
    tumour_record_weighing: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- auditor console (/audit) ----------------------------------------------------------------
    # Key signing the console's session cookie; empty means one generated once into data_dir
    # (0600). Production: set it, the same for every web process.
    audit_console_secret_key: SecretStr | None = None
    # CSP frame-ancestors of the console pages: "'none'" (no framing) or the EHR origins
    # allowed to embed it, space-separated. Anything but 'none' also makes the session cookie
    # SameSite=None; Secure, which a cross-site iframe needs.
    audit_console_frame_ancestors: str = Field(default="'none'", pattern=r"^[A-Za-z0-9'*:/._\- ]{1,1000}$")
    # An auditor session ends this long after login.
    audit_console_session_max_age_s: int = Field(default=8 * 3600, gt=0)

    # --- SMART launch / clinician app ---
    # The client id this app is registered under at the EHR's authorization server; empty means
    # the launch page says the app is not registered instead of starting a launch.
    smart_client_id: str | None = Field(default=None, pattern=r"^[\x21-\x7e]{1,200}$")
    # Secret of a confidential client (client_secret_basic); empty means a public client (PKCE only).
    smart_client_secret: SecretStr | None = None
    # FHIR servers (iss) a launch may name, space-separated; empty means only fhir_base_url. The app
    # never fetches a discovery document, key set or token from a server a launch names otherwise.
    smart_allowed_issuers: str = Field(default="", pattern=r"^[A-Za-z0-9:/._\-%~ ]{0,4000}$")
    # redirect_uri registered for the client; empty means <this app's URL>/smart/callback.
    smart_redirect_uri: AnyHttpUrl | None = None
    # A clinician's launch (its tokens, encrypted server-side) is forgotten this long after login.
    smart_session_max_age_s: int = Field(default=8 * 3600, gt=0)
    # CSP frame-ancestors of the clinician pages: the EHR origins that may embed the app, or 'none'.
    clinician_frame_ancestors: str = Field(default="'none'", pattern=r"^[A-Za-z0-9'*:/._\- ]{1,1000}$")
    # SameSite of the clinician session cookie. "auto": None; Secure over HTTPS (what a cross-site
    # EHR iframe needs), Lax over plain HTTP. "None" always also makes it Secure.
    clinician_cookie_samesite: Literal["auto", "None", "Lax", "Strict"] = "auto"

    # --- inbox ---
    # SMART Backend Services client id of the inbox at the FHIR server's authorization server;
    # empty means the inbox cannot read photos (notifications are refused, the poller stays idle).
    inbox_client_id: str | None = Field(default=None, pattern=r"^[\x21-\x7e]{1,200}$")
    # Scopes the inbox asks for (SMART v2); a token granting fewer is refused, not used half-way.
    inbox_scopes: str = Field(
        default=(
            "system/Media.rs system/DocumentReference.rs system/Binary.r system/Patient.r "
            "system/Observation.rs system/Observation.c system/Device.rs system/Device.c "
            "system/Provenance.c system/Communication.c system/Task.c"
        ),
        pattern=r"^[A-Za-z0-9/.*_\-?=&| ]{1,2000}$",
    )
    # The private key that signs the client assertion (PEM, mode 0600); empty means
    # <data dir>/keys/inbox-backend.pem, where `photomarker keys generate` puts it.
    inbox_private_key_path: Path | None = None
    # Secret the FHIR server sends in the notification header (set in Subscription.channel.header);
    # empty means every notification is refused.
    inbox_notification_secret: SecretStr | None = Field(default=None, min_length=16)
    # Seconds between polls for new photos (the fallback when notifications are lost); 0 = no polling.
    inbox_poll_interval_s: float = Field(default=300, ge=0)
    # A poll looks back this far before its cursor: a server may commit a resource a little after
    # the lastUpdated it stamped on it.
    inbox_poll_overlap_s: float = Field(default=60, ge=0, le=86400)
    # Site rules: a photo is patient-submitted when its Media.operator / DocumentReference.author is
    # a Patient (if true), or it carries one of these meta.tag or type codings ("system|code").
    inbox_operator_patient: bool = True
    inbox_submitted_tags: tuple[str, ...] = ()
    inbox_submitted_types: tuple[str, ...] = ()
    # Which analyses run, keyed by a body-site / Media type / modality coding ("system|code" or a
    # bare code) → "skin", "conjunctiva", "auto" or "skip"; "*" is the default (else "auto").
    inbox_kind_rules: dict[str, Literal["auto", "skin", "conjunctiva", "skip"]] = Field(default_factory=dict)
    # What a photo failing the quality gate gets, for the patient app to show: a Communication
    # addressed to the patient, a Task owned by the patient, or nothing beyond the quality result.
    inbox_retake_resource: Literal["Communication", "Task", "none"] = "Communication"

    @field_validator("data_dir", "model_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("device", mode="after")
    @classmethod
    def _device_present(cls, value: str) -> str:
        # Checked at start-up: a GPU worker silently running on CPU would miss every latency target.
        if value == "cuda":
            import torch  # only here: plain CLI commands should not pay torch's import time

            if not torch.cuda.is_available():
                raise ValueError("cuda requested but no CUDA device is available; use auto or cpu")
        return value

    @model_validator(mode="after")
    def _brightness_order(self) -> Settings:
        if self.quality_min_mean_brightness >= self.quality_max_mean_brightness:
            raise ValueError("quality_min_mean_brightness must be below quality_max_mean_brightness")
        return self

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"

    @property
    def effective_audit_database_url(self) -> str:
        return self.audit_database_url or f"sqlite:///{self.data_dir / 'audit.sqlite'}"

    @property
    def effective_jobs_database_url(self) -> str:
        return self.jobs_database_url or f"sqlite:///{self.data_dir / 'jobs.sqlite'}"

    @property
    def effective_api_max_body_bytes(self) -> int:
        # base64 inflates by 4/3; 1 MiB for the rest of the resource.
        return self.api_max_body_bytes or self.max_photo_bytes * 4 // 3 + 1024 * 1024

    @property
    def canonical(self) -> str:
        return str(self.canonical_base).rstrip("/")

    @property
    def fhir_base(self) -> str | None:
        return str(self.fhir_base_url).rstrip("/") if self.fhir_base_url else None


def _is_secret(field: str) -> bool:
    info = Settings.model_fields.get(field)
    return "key" in field or (info is not None and "SecretStr" in str(info.annotation))


def _variable_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else ""
    return ENV_PREFIX + field.upper() if field else ENV_PREFIX + "*"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus ``overrides``); bad values raise ``SettingsError``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            got = error.get("input")
            field = str(error["loc"][0]) if error["loc"] else ""
            # Never echo a secret's value into a log or terminal, even a wrong one.
            secret = _is_secret(field)
            shown = f" (got {got!r})" if isinstance(got, str | int | float) and not secret else ""
            problems.append(f"{_variable_name(tuple(error['loc']))}: {error['msg']}{shown}")
        raise SettingsError("invalid settings — " + "; ".join(problems)) from None
