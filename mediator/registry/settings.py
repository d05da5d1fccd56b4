"""The ``registry:`` section of ``config.yaml`` (pydantic models only: imported by :mod:`mediator.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ENTERPRISE_SYSTEM = "https://dmp.sante.gov.ma/fhir/sid/enterprise"

__all__ = ["ENTERPRISE_SYSTEM", "ChannelRegistryPolicy", "MUConfig", "RegistryConfig", "SurvivorshipConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MUConfig(_Model):
    m: float = Field(gt=0, lt=1)
    u: float = Field(gt=0, lt=1)


class SurvivorshipConfig(_Model):
    rules: dict[str, Literal["most_frequent", "most_recent", "source_priority"]] = Field(default_factory=dict)
    source_priority: list[str] = Field(default_factory=list)


class ChannelRegistryPolicy(_Model):
    review_policy: Literal["flag", "hold"] | None = None
    provider_policy: Literal["flag", "reject", "off"] | None = None


class RegistryConfig(_Model):
    """Client registry (MPI) and provider/facility registry settings."""

    enabled: bool = True
    path: str = Field("registry.db", description="SQLite file, relative to data_dir")
    enterprise_system: str = ENTERPRISE_SYSTEM
    auto_threshold: float = Field(24.0, description="weight (bits) from which a record is linked without review")
    review_threshold: float = Field(9.0, description="weight (bits) from which a record is queued for review")
    review_policy: Literal["flag", "hold"] = "flag"
    provider_policy: Literal["flag", "reject", "off"] = "flag"
    patient_id: Literal["source", "enterprise"] = "source"
    formats: dict[str, str] = Field(default_factory=dict, description="identifier kind -> regular expression")
    m_u: dict[str, MUConfig] = Field(default_factory=dict)
    weights: str = Field("", description="JSON written by `mediator registry estimate` (absolute, or relative to the "
                                         "working directory); applied over m_u")
    vetoes: bool = Field(True, description="a pair whose given names or sexes differ is never linked without review "
                                           "(twins, a child under a parent's identifier)")
    survivorship: SurvivorshipConfig = Field(default_factory=SurvivorshipConfig)
    max_block: int = Field(200, gt=0, description="blocking keys with more records than this are skipped")
    channels: dict[str, ChannelRegistryPolicy] = Field(default_factory=dict)
