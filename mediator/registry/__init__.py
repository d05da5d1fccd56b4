"""Client registry (MPI) and provider/facility registry (mCSD) — see ``docs/registry.md``.

Wiring entry points (imported lazily by the node and the CLI):

* :func:`mediator.registry.config.open_registries` — client + provider registries and the pipeline resolver
* :func:`mediator.registry.http.add_registry_routes` — PDQm, PIXm, ``$match``, mCSD, review API
* :func:`mediator.registry.cli.add_registry_cli` — ``mediator registry ...``
"""
