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

    # Add LOINC 718-7 (blood haemoglobin) to the Hb estimate only when a site asks for it.
    hb_add_loinc_718_7: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("data_dir", "model_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

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
    def canonical(self) -> str:
        return str(self.canonical_base).rstrip("/")

    @property
    def fhir_base(self) -> str | None:
        return str(self.fhir_base_url).rstrip("/") if self.fhir_base_url else None


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
            shown = f" (got {got!r})" if isinstance(got, str | int | float) else ""
            problems.append(f"{_variable_name(tuple(error['loc']))}: {error['msg']}{shown}")
        raise SettingsError("invalid settings — " + "; ".join(problems)) from None
