"""The node's Prometheus metrics (served at /metrics by the API)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.height = Gauge("ponas_height", "height of the canonical tip", registry=self.registry)
        self.peers = Gauge("ponas_peers", "connected peers", registry=self.registry)
        self.mempool = Gauge("ponas_mempool_transactions", "transfers in the mempool", registry=self.registry)
        self.round_commitments = Gauge("ponas_round_commitments", "commitments seen this round", registry=self.registry)
        self.requests = Counter("ponas_api_requests", "API requests", ["method", "status"], registry=self.registry)
        self.blocks = Counter("ponas_blocks_imported", "blocks imported", ["status"], registry=self.registry)
        self.rejects = Counter("ponas_rejects", "rejected inputs by reason", ["source", "reason"], registry=self.registry)
