"""The node's runtime configuration (apart from the chain's parameters, which the genesis
file fixes): where it keeps its data, where it listens, whom it dials, whether it closes
rounds."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The least fee (base units) a transfer needs to enter this node's mempool: 0.00001 coin.
DEFAULT_MIN_RELAY_FEE = 1_000


@dataclass
class NodeConfig:
    datadir: str
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 0
    api_host: str = "127.0.0.1"
    api_port: int = 0
    peers: list[tuple[str, int]] = field(default_factory=list)
    closer_key: str | None = None
    tick: float = 0.2
    min_relay_fee: int = DEFAULT_MIN_RELAY_FEE
