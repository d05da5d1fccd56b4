"""Configuration models: the single source of truth for ``config.yaml`` and channel files.

``config.yaml`` holds the node settings (listeners, store, identifier systems, destinations);
each file in ``channels/`` describes one channel: what it accepts, which mapping it applies and
where the result goes. Both are validated by pydantic; errors carry file and line
(:mod:`mediator.yamlfile`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mediator.registry.settings import RegistryConfig
from mediator.yamlfile import YamlFileError, load_yaml, pydantic_errors


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Model):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0)


class MllpConfig(_Model):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(2575, ge=0, le=65535)
    max_frame_bytes: int = Field(16 * 1024 * 1024, gt=0, description="largest accepted frame")
    idle_timeout_s: float = Field(300.0, gt=0, description="close a connection idle this long")
    frame_timeout_s: float = Field(
        30.0, gt=0, description="a frame once started must complete within this time (slow clients)"
    )
    max_connections: int = Field(512, gt=0)


class StoreConfig(_Model):
    backend: Literal["sqlite"] = "sqlite"
    path: str = "mediator.db"
    commit_interval_ms: float = Field(
        0.0, ge=0, description="extra wait to gather a commit batch; 0 = whatever queued during the last commit"
    )
    commit_max_batch: int = Field(512, gt=0)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    retention_days: float = Field(
        0, ge=0, description="finished transactions older than this are deleted (0 = keep for ever)")
    dedupe_days: float = Field(
        30, ge=0, description="a resend is recognised as a duplicate for this long (0 = for ever)")
    encryption_key_file: str | None = Field(
        None, description="a 256-bit key (made by `mediator keygen`): message bodies and route exchanges are "
                          "then sealed with AES-256-GCM in the store, patient identifiers kept as keyed hashes")


class WorkerConfig(_Model):
    enabled: bool = Field(True, description="process accepted messages on this node (off: accept only)")
    concurrency: int = Field(128, gt=0, description="messages processed at once (different patients)")
    processes: int = Field(
        0, ge=0, le=64,
        description="0: process in the node's own process; N: N worker processes, each owning the patients "
                    "whose ordering key falls in its partition (uses more cores, keeps ACKs fast)")
    poll_interval_ms: float = Field(10.0, gt=0, description="worker processes: how often an idle worker looks")
    nice: int = Field(5, ge=0, le=19, description="worker processes run this much nicer than the node, so that "
                                                   "receiving and acknowledging keep priority under load")


class IdentifierConfig(_Model):
    """How incoming identifiers (HL7 CX, CDA II) are given FHIR identifier systems."""

    systems: dict[str, str] = Field(
        default_factory=lambda: {
            "cin": "https://dmp.sante.gov.ma/fhir/sid/cin",
            "idcs": "https://dmp.sante.gov.ma/fhir/sid/idcs",
            "ins": "https://dmp.sante.gov.ma/fhir/sid/ins",
            "cnss": "https://dmp.sante.gov.ma/fhir/sid/cnss",
            "inpe": "https://dmp.sante.gov.ma/fhir/sid/inpe",
            "encounter": "https://dmp.sante.gov.ma/fhir/sid/encounter/{facility}",
            "ipp": "https://dmp.sante.gov.ma/fhir/sid/ipp/{facility}",
            "local": "https://dmp.sante.gov.ma/fhir/sid/local/{authority}",
        },
        description="identifier kind -> system URI; {facility} and {authority} are filled in",
    )
    by_authority: dict[str, str] = Field(
        default_factory=lambda: {"CIN": "cin", "CNIE": "cin", "IDCS": "idcs", "INS": "ins",
                                 "CNSS": "cnss", "INPE": "inpe"},
        description="CX-4.1 assigning authority -> identifier kind",
    )
    by_type: dict[str, str] = Field(
        default_factory=lambda: {"NI": "cin", "NNMAR": "cin", "NH": "ins", "SS": "cnss",
                                 "SN": "cnss", "PI": "ipp", "MR": "ipp", "PRN": "inpe"},
        description="CX-5 identifier type code -> identifier kind",
    )
    default_kind: str = "ipp"
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="other system URIs senders use (FHIR identifier.system, urn:oid:<CDA root>) -> identifier "
                    "kind; FHIR and CDA input is normalised to the configured system",
    )

    @model_validator(mode="after")
    def _kinds_exist(self) -> IdentifierConfig:
        for table in (self.by_authority, self.by_type, self.aliases):
            for code, kind in table.items():
                if kind not in self.systems:
                    raise ValueError(f"{code!r} maps to unknown identifier kind {kind!r}")
        if self.default_kind not in self.systems:
            raise ValueError(f"default_kind {self.default_kind!r} is not in systems")
        return self


class DestinationConfig(_Model):
    """An external system a channel routes to (the shared record, CNSS, ...)."""

    type: Literal["fhir", "cnss", "http"] = "fhir"
    url: str = Field(description="base URL; '{self}' stands for this node's own HTTP base URL")
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(6, ge=1)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(300.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)


SANDBOX_SHR_URL = "{self}/shr/fhir"


class SandboxConfig(_Model):
    shr: bool = True
    cnss: bool = True
    shr_process: bool = Field(True, description=(
        "run the sandbox shared record in a process of its own (routes to '{self}/shr/fhir' reach it "
        "directly; /shr/fhir on the node forwards to it), so that its work never delays ACKs"))
    shr_port: int = Field(0, ge=0, le=65535, description="loopback port of that process (0: any free port)")


class ClientConfig(_Model):
    """A sending system allowed on the HTTP endpoints (basic auth)."""

    username: str
    password: str
    demo: bool = False


class AuthConfig(_Model):
    required: bool = False
    clients: list[ClientConfig] = Field(default_factory=list)


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class AppConfig(_Model):
    node_id: str = "mediator-1"
    data_dir: str = "./data"
    channels_dir: str = "channels"
    mappings_dir: str = "mappings"
    http: HttpConfig = Field(default_factory=HttpConfig)
    mllp: MllpConfig = Field(default_factory=MllpConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    identifiers: IdentifierConfig = Field(default_factory=IdentifierConfig)
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    # Set by load_config: where relative paths are resolved from.
    base_dir: str = Field(".", exclude=True)

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data_dir)

    @property
    def store_path(self) -> Path:
        p = Path(self.store.path)
        return p if p.is_absolute() else self.data_path / p

    @property
    def self_base_url(self) -> str:
        host = "127.0.0.1" if self.http.host in ("0.0.0.0", "::", "") else self.http.host
        return f"http://{host}:{self.http.port}"

    def destination_url(self, url: str) -> str:
        """A destination URL as used: ``{self}`` is this node; a URL under ``{self}/shr/fhir`` goes
        straight to the sandbox shared record's own process when it runs in one."""
        sandbox = self.sandbox
        rest = url[len(SANDBOX_SHR_URL):] if url.startswith(SANDBOX_SHR_URL) else None
        if sandbox.shr and sandbox.shr_process and sandbox.shr_port and rest is not None and rest[:1] in ("", "/"):
            return f"http://127.0.0.1:{sandbox.shr_port}{rest}"
        return url.replace("{self}", self.self_base_url)


Protocol = Literal["hl7v2", "fhir", "cda", "cnss-fse"]
Transport = Literal["mllp", "http"]


_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def _document_code(v: str) -> str:
    if not v or v != v.strip() or any(c.isspace() for c in v):
        raise ValueError(f"document code {v!r} must be a code without spaces, like '18842-5'")
    return v


def _template_oid(v: str) -> str:
    if not _OID.match(v):
        raise ValueError(f"template {v!r} must be an OID (a templateId root) like '2.16.840.1.113883.10.20.22.1.8'")
    return v


class ChannelSource(_Model):
    protocol: Protocol
    transports: list[Transport] = Field(default_factory=lambda: ["mllp", "http"])
    message_types: list[str] = Field(
        default_factory=list, description="HL7 v2 'ADT^A01' (or 'ADT^*'); empty accepts any"
    )
    sending_applications: list[str] = Field(default_factory=list, description="MSH-3.1; empty = any")
    sending_facilities: list[str] = Field(default_factory=list, description="MSH-4.1; empty = any")
    versions: list[str] = Field(
        default_factory=lambda: ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8"]
    )
    processing_ids: list[str] = Field(default_factory=lambda: ["P", "T", "D"])
    document_codes: list[Annotated[str, AfterValidator(_document_code)]] = Field(
        default_factory=list,
        description="CDA: the ClinicalDocument/code/@code values taken (LOINC: 18842-5 discharge summary, 34133-9 "
                    "summary of episode); with document_templates, either one matching is enough; both empty: "
                    "any document (a catch-all)")
    document_templates: list[Annotated[str, AfterValidator(_template_oid)]] = Field(
        default_factory=list,
        description="CDA: the ClinicalDocument/templateId/@root values taken (an OID: 2.16.840.1.113883.10.20.22.1.8 "
                    "C-CDA discharge summary, 2.16.840.1.113883.10.20.22.1.2 CCD)")

    @field_validator("document_codes", "document_templates")
    @classmethod
    def _cda_only(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if v and info.data.get("protocol") != "cda":
            raise ValueError(f"only for CDA channels (protocol: cda), not {info.data.get('protocol')!r}")
        return v

    @field_validator("message_types")
    @classmethod
    def _shape(cls, v: list[str]) -> list[str]:
        for t in v:
            if "^" not in t:
                raise ValueError(f"message type {t!r} must look like 'ADT^A01' or 'ADT^*'")
        return v


class ChannelRoute(_Model):
    destination: str
    when: str | None = Field(None, description="reserved: condition on the mapped result")


class ChannelConfig(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    enabled: bool = True
    priority: int = 0
    source: ChannelSource
    mapping: str | None = Field(None, description="mapping file, relative to mappings_dir")
    routes: list[ChannelRoute] = Field(default_factory=list)

    # Set by load_channel.
    file: str = Field("", exclude=True)


class ConfigError(Exception):
    """One or more located problems in configuration files."""

    def __init__(self, errors: list[YamlFileError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def load_config(path: str | Path) -> AppConfig:
    """Load ``config.yaml``; raise :class:`ConfigError` naming file and line."""
    p = Path(path)
    try:
        data, locs = load_yaml(p)
    except YamlFileError as exc:
        raise ConfigError([exc]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([locs.error((), "the top level must be a mapping")])
    try:
        cfg = AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(pydantic_errors(exc, locs)) from None
    cfg.base_dir = str(p.resolve().parent)
    return cfg


def load_channel(path: str | Path, destinations: dict[str, DestinationConfig]) -> ChannelConfig:
    p = Path(path)
    try:
        data, locs = load_yaml(p)
    except YamlFileError as exc:
        raise ConfigError([exc]) from None
    if not isinstance(data, dict):
        raise ConfigError([locs.error((), "a channel file must be a mapping")])
    try:
        ch = ChannelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(pydantic_errors(exc, locs)) from None
    errors = [
        locs.error(("routes", i, "destination"), f"unknown destination {r.destination!r}")
        for i, r in enumerate(ch.routes)
        if r.destination not in destinations
    ]
    if errors:
        raise ConfigError(errors)
    ch.file = str(p)
    return ch


def load_channels(cfg: AppConfig) -> list[ChannelConfig]:
    """Every ``*.yaml`` in the channels directory, sorted by priority then name."""
    directory = cfg.resolve(cfg.channels_dir)
    channels, errors = [], []
    for f in sorted(directory.glob("*.y*ml")):
        try:
            channels.append(load_channel(f, cfg.destinations))
        except ConfigError as exc:
            errors.extend(exc.errors)
    names = [c.name for c in channels]
    for c in channels:
        if names.count(c.name) > 1:
            errors.append(YamlFileError(c.file, 1, f"channel name {c.name!r} is used twice"))
    if errors:
        raise ConfigError(errors)
    return sorted(channels, key=lambda c: (-c.priority, c.name))
