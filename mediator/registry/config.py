"""The ``registry:`` section of ``config.yaml`` and the one function that builds the registries from it.

Proposed for :class:`mediator.config.AppConfig` as
``registry: RegistryConfig = Field(default_factory=RegistryConfig)``; until it is there,
:func:`open_registries` falls back to the defaults below.

.. code-block:: yaml

    registry:
      enabled: true
      path: registry.db            # under data_dir
      enterprise_system: https://dmp.sante.gov.ma/fhir/sid/enterprise
      auto_threshold: 24           # bits; link without review
      review_threshold: 9          # bits; a candidate for an operator
      review_policy: flag          # flag | hold   (per channel: channels.<name>.review_policy)
      provider_policy: flag        # flag | reject | off
      patient_id: source           # source | enterprise (Patient.id becomes the enterprise id)
      formats: {ins: "[0-9]{12}"}  # identifier format overrides (regular expressions)
      survivorship: {rules: {birth_date: most_recent}, source_priority: [CHU-IBN-SINA]}
      m_u: {family: {m: 0.95, u: 0.01}}
      weights: weights.json        # from `mediator registry estimate` (m, u and weights per level)
      vetoes: true                 # different given names / sexes never auto-link (twins)
      channels: {adt-sih: {review_policy: hold}}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mediator.registry.identifiers import IdentifierRules
from mediator.registry.matching import FieldMU, MatchConfig
from mediator.registry.providers import INPE_SYSTEM, ProviderRegistry
from mediator.registry.registry import ClientRegistry, Survivorship
from mediator.registry.resolver import RegistryResolver, ResolverPolicy, SystemMap
from mediator.registry.settings import RegistryConfig

__all__ = ["RegistryConfig", "Registries", "open_registries"]


@dataclass
class Registries:
    """What :func:`open_registries` builds: hand ``resolver`` to the pipeline, all three to the routes."""

    client: ClientRegistry
    providers: ProviderRegistry
    resolver: RegistryResolver
    systems: SystemMap
    config: RegistryConfig

    def close(self) -> None:
        self.client.close()
        self.providers.close()


def registry_path(cfg: Any) -> Path:
    """The registry file of an ``AppConfig`` (``registry.path`` under ``data_dir``)."""
    rc: RegistryConfig = getattr(cfg, "registry", None) or RegistryConfig()
    p = Path(rc.path)
    return p if p.is_absolute() else cfg.data_path / p


def open_registries(cfg: Any, path: str | Path | None = None, *, inline_links: bool = False) -> Registries:
    """Open (creating if needed) the client and provider registries of an ``AppConfig``;
    ``inline_links``: link on the caller's event loop (a worker process: see LinkBatcher)."""
    rc: RegistryConfig = getattr(cfg, "registry", None) or RegistryConfig()
    file = Path(path) if path else registry_path(cfg)
    rules = IdentifierRules(rc.formats)
    match = MatchConfig(auto=rc.auto_threshold, review=rc.review_threshold, vetoes=rc.vetoes)
    if rc.m_u:
        match = match.with_mu({k: FieldMU(v.m, v.u) for k, v in rc.m_u.items()})
    if rc.weights:
        match = match.with_weights(orjson.loads(Path(rc.weights).read_bytes()))
    client = ClientRegistry(file, match=match, rules=rules, max_block=rc.max_block,
                            survivorship=Survivorship(rules=dict(rc.survivorship.rules),
                                                      source_priority=list(rc.survivorship.source_priority)))
    systems = SystemMap(cfg.identifiers.systems)
    providers = ProviderRegistry(file, inpe_system=systems.system_of("inpe") or INPE_SYSTEM, rules=rules)
    default = ResolverPolicy(review=rc.review_policy, providers=rc.provider_policy, patient_id=rc.patient_id)
    policies = {name: ResolverPolicy(review=p.review_policy or default.review,
                                     providers=p.provider_policy or default.providers, patient_id=default.patient_id)
                for name, p in rc.channels.items()}
    resolver = RegistryResolver(client, providers, systems, enterprise_system=rc.enterprise_system,
                                default_policy=default, policies=policies, inline_links=inline_links)
    return Registries(client, providers, resolver, systems, rc)
