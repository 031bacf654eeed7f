"""The node: one place that wires storage, chain, mempool, rounds, P2P and the API.

:class:`Node` owns every resource and starts and stops them in pairs. It is also the P2P
message handler: it validates what peers send, relays what is new, discourages peers that
send invalid data, and syncs headers first from peers ahead of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from consensus.chain import genesis_block
from consensus.engines import Engine
from consensus.errors import ConsensusError, InvalidBlock, InvalidRound, InvalidTransaction
from consensus.files import write_json_atomic, write_text_atomic
from consensus.params import ChainParams
from consensus.types import ZERO_HASH, Block, Commitment, Header, Transfer
from node.api import make_app
from node.chain import Chain
from node.keyfile import load_beacon
from node.mempool import Mempool
from node.metrics import Metrics
from node.rounds import Announce, RoundService
from node.storage.kv import Datadir, open_datadir
from p2p import messages as M
from p2p.errors import Misbehaving
from p2p.network import Network, Peer

log = logging.getLogger("ponas.node")

#: Reasons that are no fault of the peer that relayed a block or candidate (timing, races).
BENIGN = {
    "time-too-new", "wrong-close", "bad-prevblk", "unknown-parent", "close-ahead", "close-other-parent",
    "commit-too-late", "commit-wrong-round", "round-moved", "duplicate-seq", "txn-already-in-mempool",
    "bad-nonce", "insufficient-funds", "txn-mempool-conflict", "mempool-full", "too-many-commitments",
    "missing-weights", "round-final",
}
GETBLOCKS_BATCH = 16
HEADERS_MAX = 2000


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


class Node:
    def __init__(
        self, config: NodeConfig, params: ChainParams, clock: Callable[[], float] = time.time,
        engine: Engine | None = None,
    ) -> None:
        """``engine``: the consensus engine to inject (tests pass a no-proof one); by default
        the genesis file's, as :func:`consensus.engines.get_engine` builds it."""
        self.config = config
        self._engine = engine
        self.params = params
        self.clock = clock
        self.genesis_hash = genesis_block(params).header.hash()
        self.metrics = Metrics()
        self.token = ""
        self.datadir: Datadir | None = None
        self.network: Network | None = None
        self.rounds: RoundService | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._seen: dict[bytes, float] = {}  # hashes of relayed messages
        self._requested: dict[bytes, Peer] = {}  # blocks asked for during sync, in flight
        self._to_fetch: dict[Peer, list[bytes]] = {}  # blocks announced by headers, not yet asked for
        self._syncing: set[Peer] = set()
        self._tx_relay: list[tuple[Transfer, Peer | None]] = []  # flushed as batches each tick
        # The retrain check of a round's best candidate runs here, off the event loop, while the
        # reveal window is open; at the window's end the import finds it in the verifier's cache.
        self._retrainer: concurrent.futures.ThreadPoolExecutor | None = None
        self._retrains: dict[tuple[str, int], concurrent.futures.Future[Any]] = {}
        self._awaited: dict[tuple[str, int], int] = {}  # retrains a relayed block waits for: never cancelled
        self._evaluator: concurrent.futures.ThreadPoolExecutor | None = None  # candidates' model step
        self.api_port = 0
        self.p2p_port = 0
        self.started = asyncio.Event()

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        closer = load_beacon(cfg.closer_key) if cfg.closer_key else None
        self.datadir = open_datadir(cfg.datadir, self.params.chain_id, self.genesis_hash)
        try:
            self.chain = Chain(self.datadir.kv, self.params, engine=self._engine, clock=self.clock)
            self.mempool = Mempool(self.params.chain_id, self.chain.account, min_fee=cfg.min_relay_fee, clock=self.clock)
            if self.params.engine == "ponas":
                await asyncio.to_thread(self.chain.engine.warm_up)  # type: ignore[attr-defined]
                self.rounds = RoundService(self.chain, self.mempool, self.clock(), closer)
                self._retrainer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="retrain")
                self._evaluator = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="evaluate")
            self.token = secrets.token_hex(32)
            write_text_atomic(os.path.join(cfg.datadir, ".cookie"), self.token, mode=0o600)
            self.network = Network(
                chain_id=self.params.chain_id, genesis_hash=self.genesis_hash, node_id=os.urandom(16),
                listen_host=cfg.p2p_host, listen_port=cfg.p2p_port, handler=self,
            )
            await self.network.start()
            self.p2p_port = self.network.port
            for host, port in cfg.peers:
                self.network.add_seed(host, port)
            self._runner = web.AppRunner(make_app(self), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, cfg.api_host, cfg.api_port)
            await site.start()
            self.api_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            write_json_atomic(os.path.join(cfg.datadir, "node.json"), {
                "pid": os.getpid(), "api": f"http://{cfg.api_host}:{self.api_port}",
                "p2p": f"{cfg.p2p_host}:{self.p2p_port}", "chain_id": self.params.chain_id,
            })
            self._ticker = asyncio.create_task(self._tick_loop(), name="round-ticker")
        except BaseException:
            await self.stop()
            raise
        log.info("node started", extra={"height": self.chain.height, "api": self.api_port, "p2p": self.p2p_port})
        self.started.set()

    async def stop(self) -> None:
        """Stop accepting, close peers, flush and close the database; safe to call twice."""
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except (asyncio.CancelledError, Exception):
                pass
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.network is not None:
            await self.network.stop()
            self.network = None
        for pool in (self._retrainer, self._evaluator):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._retrainer = self._evaluator = None
        if self.datadir is not None:
            for name in (".cookie", "node.json"):
                try:
                    os.unlink(os.path.join(self.config.datadir, name))
                except FileNotFoundError:
                    pass
            self.datadir.close()
            self.datadir = None
            log.info("node stopped")

    async def _tick_loop(self) -> None:
        last_expire = self.clock()
        while True:
            await asyncio.sleep(self.config.tick)
            try:
                self._flush_tx_relay()
                if self.rounds is not None:
                    await self._await_retrains()
                    for ann in self.rounds.tick(self.clock()):
                        self._announce(ann)
                if self.clock() - last_expire > 60:
                    self.mempool.expire()
                    last_expire = self.clock()
                    self._prune_seen()
            except Exception:
                log.exception("round tick failed")

    def _retrain_best(self) -> None:
        """Start retraining the round's best candidate in the worker thread (once per genotype
        and seed), when the chain's policy asks for it."""
        if self.rounds is None or self._retrainer is None or not self.rounds.round.candidates:
            return
        engine = self.rounds.engine
        if not engine.retrain or engine.pp.policy != "retrain":
            return
        best = min(self.rounds.round.candidates.values(), key=lambda c: c.rank)
        key = (best.block.header.genotype, best.block.header.seed)
        if key in self._retrains or engine.verifier.retrained(*key):
            return
        self._drop_superseded()
        self._retrains[key] = self._retrainer.submit(engine.verifier.retrain, *key)

    def _drop_superseded(self) -> None:
        """Forget finished retrains, and cancel the queued ones a better candidate superseded
        before they started (one worker: a queue of them, one per new best, held a loaded
        node's round end for minutes), except those a relayed block waits for."""
        for old in [k for k, f in self._retrains.items() if f.done() or (k not in self._awaited and f.cancel())]:
            del self._retrains[old]

    async def _retrain_first(self, block: Block, weights: bytes) -> bool:
        """For a block from a peer that its round's retrain check will retrain: once its seal
        and weights hash check out (so that no peer can make this node train for nothing), run
        the training in the worker thread and wait for it there; the import, on the event loop,
        then finds it cached. True if it waited."""
        if self.rounds is None or self._retrainer is None or block.proof is None:
            return False
        engine = self.rounds.engine
        key = (block.header.genotype, block.header.seed)
        if not engine.retrain or engine.pp.policy != "retrain" or engine.verifier.retrained(*key):
            return False
        parent = self.chain.index.get(block.header.parent)
        if parent is None or hashlib.sha256(weights).digest() != block.header.weights_hash:
            return False
        try:
            engine.validate_seal(block, parent.header, self.chain)
        except ConsensusError:
            return False  # the import says why
        future = self._retrains.get(key)
        if future is None or future.cancelled():
            future = self._retrains[key] = self._retrainer.submit(engine.verifier.retrain, *key)
        self._awaited[key] = self._awaited.get(key, 0) + 1
        try:
            await asyncio.wrap_future(future)
        except Exception:  # noqa: BLE001 - a genotype that does not train: the import refuses it
            return False
        finally:
            self._awaited[key] -= 1
            if not self._awaited[key]:
                del self._awaited[key]
        return True

    async def _await_retrains(self) -> None:
        """Once the reveal window is over, let running retrains finish (off the loop) before
        the round's block is chosen, so that the import's retrain check finds them cached."""
        assert self.rounds is not None
        reveal_end = self.rounds.round.reveal_end
        if reveal_end is None or self.clock() < reveal_end:
            return
        # a late candidate that arrives meanwhile may start another retrain (a new best): wait
        # for that one too, or the import would train it again on the event loop
        while pending := [asyncio.wrap_future(f) for f in self._retrains.values() if not f.done()]:
            await asyncio.wait(pending)

    def _announce(self, ann: Announce) -> None:
        if self.network is None:
            return
        if ann.kind == "commitment" and ann.commitment is not None:
            self._seen[ann.commitment.hash()] = self.clock()
            self.network.broadcast(M.CommitmentMsg(ann.commitment))
        elif ann.kind == "close" and ann.close is not None:
            self._seen[ann.close.hash()] = self.clock()
            self.network.broadcast(M.CloseMsg(ann.close, ann.commitments))
        elif ann.kind == "block" and ann.block is not None:
            self.metrics.blocks.labels(ann.result.status if ann.result else "connected").inc()
            self._seen[ann.block.header.hash()] = self.clock()
            self.network.broadcast(M.BlockMsg(ann.block, ann.weights, False))

    def _prune_seen(self) -> None:
        cutoff = self.clock() - 3600
        self._seen = {h: t for h, t in self._seen.items() if t > cutoff}

    def _new(self, h: bytes) -> bool:
        if h in self._seen:
            return False
        self._seen[h] = self.clock()
        return True

    # --- views for the API --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        chain = self.chain
        return {
            "chain_id": self.params.chain_id, "genesis": self.genesis_hash.hex(), "engine": self.params.engine,
            "height": chain.height, "tip": chain.tip_hash.hex(), "state_root": chain.tip.state_root.hex(),
            "peers": len(self.network.peers) if self.network else 0,
            "round": self.rounds.info(self.clock()) if self.rounds else None,
            "mempool": len(self.mempool), "syncing": bool(self._syncing),
        }

    def peers_info(self) -> list[dict[str, Any]]:
        if self.network is None:
            return []
        return [
            {"node_id": p.node_id.hex(), "host": p.host, "port": p.port, "direction": p.direction,
             "height": p.best_height, "since": p.connected_since}
            for p in self.network.peers
        ]

    def refresh_metrics(self) -> None:
        m = self.metrics
        m.height.set(self.chain.height)
        m.peers.set(len(self.network.peers) if self.network else 0)
        m.mempool.set(len(self.mempool))
        if self.rounds is not None:
            r = self.rounds.round
            m.round_commitments.set(len(r.ordered) if r.close else len(r.commitments.items))

    # --- submissions (API and P2P) ------------------------------------------------------------

    async def submit_tx(self, tx: Transfer, source: str = "api", peer: Peer | None = None) -> bytes:
        h = self.mempool.add(tx)
        self._seen[h] = self.clock()
        self._tx_relay.append((tx, peer))  # relayed in batches by the ticker
        return h

    def _flush_tx_relay(self) -> None:
        """Relay the transfers admitted since the last tick, as batches: one message per
        thousand transfers instead of one each, so a burst stays inside peers' rate limits."""
        if not self._tx_relay or self.network is None:
            self._tx_relay.clear()
            return
        pending, self._tx_relay = self._tx_relay, []
        for target in self.network.peers:
            txs = [tx for tx, origin in pending if origin is not target]
            for i in range(0, len(txs), M.MAX_TX_BATCH):
                asyncio.ensure_future(target.send(M.TxBatch(tuple(txs[i : i + M.MAX_TX_BATCH]))))

    async def submit_commitment(self, c: Commitment, source: str = "api", peer: Peer | None = None) -> int:
        rounds = self._need_rounds()
        new = rounds.add_commitment(c, self.clock())
        if new and self.network and self._new(c.hash()):
            self.network.broadcast(M.CommitmentMsg(c), exclude=peer)
        return rounds.round.commitments.items.index(c)

    async def submit_candidate(self, block: Block, weights: bytes, source: str = "api", peer: Peer | None = None) -> int:
        rounds = self._need_rounds()
        cand = rounds.check_candidate(block, self.clock())
        if cand is None:
            # the model step (tens of ms a candidate) runs off the event loop, one at a time, so
            # a burst of reveals does not stall the node's peers, API and round clock
            loop = asyncio.get_running_loop()
            score = await loop.run_in_executor(self._evaluator, rounds.evaluate_candidate, block, weights)
            cand = rounds.admit_candidate(block, weights, score)
        self._retrain_best()
        if self.network and self._new(block.header.hash()):
            self.network.broadcast(M.BlockMsg(block, weights, True), exclude=peer)
        return cand.score

    def _need_rounds(self) -> RoundService:
        if self.rounds is None:
            raise InvalidRound("no-rounds", "this chain's engine has no rounds")
        return self.rounds

    # --- P2P handler ----------------------------------------------------------------------------

    def best(self) -> tuple[int, bytes]:
        return self.chain.height, self.chain.tip_hash

    async def on_peer_connected(self, peer: Peer) -> None:
        if peer.best_height > self.chain.height:
            await self._request_headers(peer)
        if self.rounds is not None and self.rounds.round.close is not None:
            r = self.rounds.round
            await peer.send(M.CloseMsg(r.close, tuple(r.ordered)))  # type: ignore[arg-type]

    async def on_peer_disconnected(self, peer: Peer, reason: str) -> None:
        self._syncing.discard(peer)
        self._to_fetch.pop(peer, None)
        for h, p in list(self._requested.items()):
            if p is peer:
                del self._requested[h]

    async def on_message(self, peer: Peer, msg: Any) -> None:
        try:
            await self._dispatch(peer, msg)
        except ConsensusError as exc:
            self.metrics.rejects.labels("p2p", exc.reason).inc()
            if exc.reason in BENIGN:
                log.debug("ignored", extra={"peer": peer.host, "reason": exc.reason})
                return
            raise Misbehaving(exc.reason, exc.detail) from None

    async def _dispatch(self, peer: Peer, msg: Any) -> None:
        if isinstance(msg, (M.TxMsg, M.TxBatch)):
            for tx in (msg.tx,) if isinstance(msg, M.TxMsg) else msg.txs:
                if self._new(tx.hash()):
                    try:
                        await self.submit_tx(tx, "p2p", peer)
                    except InvalidTransaction as exc:  # races (nonces, a full pool) are no fault
                        if exc.reason not in BENIGN:
                            raise
        elif isinstance(msg, M.CommitmentMsg):
            if self._new(msg.commitment.hash()) and self.rounds is not None:
                self._seen.pop(msg.commitment.hash(), None)
                try:
                    await self.submit_commitment(msg.commitment, "p2p", peer)
                except InvalidRound as exc:
                    # for the round after a block still on its way: admitted when that round opens
                    if exc.reason != "commit-wrong-round" or not self.rounds.keep_early(msg.commitment):
                        raise
        elif isinstance(msg, M.CloseMsg):
            await self._on_close(peer, msg)
        elif isinstance(msg, M.BlockMsg):
            if msg.candidate:
                if self.rounds is not None and msg.block.header.hash() not in self.rounds.round.candidates:
                    await self.submit_candidate(msg.block, msg.weights, "p2p", peer)
            else:
                await self._on_block(peer, msg.block, msg.weights)
        elif isinstance(msg, M.GetHeaders):
            await peer.send(M.Headers(tuple(self._headers_after(msg.locator, msg.stop))))
        elif isinstance(msg, M.Headers):
            await self._on_headers(peer, list(msg.headers))
        elif isinstance(msg, M.GetBlocks):
            missing = []
            for h in msg.hashes[:GETBLOCKS_BATCH]:
                block = self.chain.get_block(h)
                if block is None:
                    missing.append(h)
                else:
                    weights = self.chain.get_weights(block.header.weights_hash) or b""
                    await peer.send(M.BlockMsg(block, weights, False))
            if missing:
                await peer.send(M.NotFound(tuple(missing)))

    async def _on_close(self, peer: Peer, msg: Any) -> None:
        if self.rounds is None:
            return
        try:
            new = self.rounds.add_close(msg.close, msg.commitments, self.clock())
        except InvalidRound as exc:
            if exc.reason in ("close-ahead", "close-other-parent"):
                await self._request_headers(peer)
                return
            raise
        if new and self.network:
            self._seen[msg.close.hash()] = self.clock()
            self.network.broadcast(msg, exclude=peer)

    async def _on_block(self, peer: Peer, block: Block, weights: bytes) -> None:
        h = block.header.hash()
        if self._requested.pop(h, None) is not None:
            await self._fetch_more(peer)
        if h in self.chain.index and self.chain.index[h].status >= 1:
            return
        if self.rounds is not None and block.header.height < self.chain.height:
            # The close of the round after this height named our block as parent: final.
            raise InvalidBlock("round-final", f"height {block.header.height} is final on this node")
        if await self._retrain_first(block, weights):
            if h in self.chain.index and self.chain.index[h].status >= 1:
                return  # it came in from another peer meanwhile
        old_height = self.chain.height
        try:
            result = self.chain.import_block(block, weights or None, self.mempool.verified)
        except InvalidBlock as exc:
            if exc.reason == "unknown-parent":
                await self._request_headers(peer)
                return
            raise
        if result.status in ("connected", "reorg"):
            self.metrics.blocks.labels(result.status).inc()
            disconnected: list[Transfer] = []
            for dh in result.disconnected:
                old = self.chain.get_block(dh)
                if old is not None:
                    disconnected.extend(old.txs)
            connected: list[Transfer] = []
            for ch in result.connected:
                b = block if ch == h else self.chain.get_block(ch)
                if b is not None:
                    connected.extend(b.txs)
            self.mempool.update(connected, disconnected)
            if self.network and self._new(h) and not self._syncing:
                self.network.broadcast(M.BlockMsg(block, weights, False), exclude=peer)
            if self.chain.height > old_height and peer in self._syncing and not self._requested \
                    and not self._to_fetch.get(peer):
                await self._request_headers(peer)

    # --- headers-first sync ---------------------------------------------------------------------

    def locator(self) -> tuple[bytes, ...]:
        """Hashes from the tip back to genesis, dense first then doubling steps (Bitcoin's)."""
        out: list[bytes | None] = []
        step, height = 1, self.chain.height
        while height > 0 and len(out) < 100:
            out.append(self.chain.hash_at(height))
            if len(out) >= 10:
                step *= 2
            height -= step
        out.append(self.genesis_hash)
        return tuple(h for h in out if h is not None)

    def _headers_after(self, locator: tuple[bytes, ...], stop: bytes) -> list[Header]:
        start = 0
        for h in locator:
            if self.chain.is_canonical(h):
                start = self.chain.index[h].header.height + 1
                break
        out = []
        for height in range(start, min(self.chain.height + 1, start + HEADERS_MAX)):
            found = self.chain.hash_at(height)
            assert found is not None
            out.append(self.chain.index[found].header)
            if found == stop:
                break
        return out

    async def _request_headers(self, peer: Peer) -> None:
        self._syncing.add(peer)
        await peer.send(M.GetHeaders(self.locator(), ZERO_HASH))

    async def _on_headers(self, peer: Peer, headers: list[Header]) -> None:
        if not headers:
            self._syncing.discard(peer)
            return
        known = self.chain.index
        prev = None
        wanted = []
        for header in headers:
            h = header.hash()
            if prev is not None and header.parent != prev:
                raise Misbehaving("bad-headers", "headers do not connect")
            if prev is None and header.parent not in known:
                raise Misbehaving("bad-headers", "the first header's parent is unknown")
            prev = h
            if h not in known and h not in self._requested:
                wanted.append(h)
        log.info("headers", extra={"peer": peer.host, "count": len(headers), "wanted": len(wanted)})
        if not wanted:
            self._syncing.discard(peer)
            return
        self._to_fetch[peer] = wanted
        await self._fetch_more(peer)

    async def _fetch_more(self, peer: Peer) -> None:
        """Keep at most ``GETBLOCKS_BATCH`` blocks in flight from ``peer`` (Bitcoin Core keeps
        16): ask for the next ones as the previous arrive."""
        queue = self._to_fetch.get(peer)
        in_flight = sum(1 for p in self._requested.values() if p is peer)
        if not queue or in_flight >= GETBLOCKS_BATCH // 2:
            return
        batch = tuple(queue[: GETBLOCKS_BATCH - in_flight])
        del queue[: len(batch)]
        for h in batch:
            self._requested[h] = peer
        await peer.send(M.GetBlocks(batch))


async def run_node(
    config: NodeConfig, params: ChainParams, stop: asyncio.Event, announce: Callable[[str], None] | None = None
) -> None:
    """Run a node until ``stop`` is set (by a signal handler)."""
    node = Node(config, params)
    await node.start()
    if announce is not None:
        announce(
            f"node up: chain {params.chain_id} height {node.chain.height}  api http://{config.api_host}:{node.api_port}/  "
            f"p2p {config.p2p_host}:{node.p2p_port}  token in {config.datadir}/.cookie"
        )
    try:
        await stop.wait()
    finally:
        await node.stop()


__all__ = ["Node", "NodeConfig", "run_node"]
