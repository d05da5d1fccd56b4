"""Prometheus metrics of a node (one registry per node, so that tests can run several side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

#: ACK latency buckets (seconds): the target is a p99 under 20 ms
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = Counter(
            "mediator_messages_received", "messages received, by protocol, transport and answer "
            "(AA, AE, AR, CA, ... for HL7 v2; the HTTP status for documents; 'none' when nothing was sent)",
            ["protocol", "transport", "answer"], registry=registry)
        self.duplicates = Counter("mediator_duplicates", "resent messages answered with the original ACK",
                                  ["protocol"], registry=registry)
        self.ack_latency = Histogram(
            "mediator_ack_latency_seconds", "from a message's last byte received to its ACK written to the "
            "connection (durable commit included)", ["transport"], buckets=ACK_BUCKETS, registry=registry)

    def answered(self, protocol: str, transport: str, answer: str, duplicate: bool = False) -> None:
        self.received.labels(protocol, transport, answer or "none").inc()
        if duplicate:
            self.duplicates.labels(protocol).inc()
