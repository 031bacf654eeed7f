"""The node: one place that wires storage, chain, mempool, rounds, P2P and the API.

:class:`Node` owns every resource and starts and stops them in pairs: the datadir, the worker
threads (one retrains and verifies blocks' work, one scores round candidates), the P2P network,
the API server and the tick. The protocol itself is :class:`~node.core.NodeCore`, sans-I/O: it
takes messages and the clock's reading and returns :mod:`node.actions`; :meth:`Node._carry_out`
is the one loop that carries them out, feeding what a worker thread computed back to the core.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from consensus.chain import genesis_block
from consensus.engines import Engine
from consensus.errors import ConsensusError, InvalidBlock
from consensus.files import write_json_atomic, write_text_atomic
from consensus.params import ChainParams
from consensus.types import Block, Commitment, Transfer
from node.actions import Action, Broadcast, Disconnect, Discourage, Evaluate, Retrain, Send, StoreRound, Verify
from node.api import make_app
from node.chain import Chain
from node.config import NodeConfig
from node.core import NodeCore
from node.keyfile import load_beacon
from node.mempool import Mempool
from node.metrics import Metrics
from node.rounds import RoundService
from node.storage.kv import Datadir, open_datadir
from p2p.errors import Misbehaving, P2PError
from p2p.network import Network, Peer

log = logging.getLogger("ponas.node")


class Node:
    def __init__(
        self, config: NodeConfig, params: ChainParams, clock: Callable[[], float] = time.time,
        engine: Engine | None = None,
    ) -> None:
        """``engine``: the consensus engine to inject (tests pass a no-proof one); by default
        the genesis file's, as :func:`consensus.engines.get_engine` builds it."""
        self.config = config
        self.params = params
        self.clock = clock
        self._engine = engine
        self.genesis_hash = genesis_block(params).header.hash()
        self.metrics = Metrics()
        self.token = ""
        self.datadir: Datadir | None = None
        self.network: Network | None = None
        self.rounds: RoundService | None = None
        self.core: NodeCore | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._work: concurrent.futures.ThreadPoolExecutor | None = None  # blocks' work, retrains
        self._evaluator: concurrent.futures.ThreadPoolExecutor | None = None  # candidates' model step
        self._background: set[asyncio.Future[Any]] = set()
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
            self._work = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="retrain")
            if self.params.engine == "ponas":
                await asyncio.to_thread(self.chain.engine.warm_up)  # type: ignore[attr-defined]
                self.rounds = RoundService(self.chain, self.mempool, self.clock(), closer)
                self._evaluator = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="evaluate")
            self.core = NodeCore(self.params, self.chain, self.mempool, self.rounds, self.metrics, self.clock())
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
        for task in list(self._background):  # held candidates being scored, retrains
            task.cancel()
        for pool in (self._work, self._evaluator):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._work = self._evaluator = None
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
        while True:
            await asyncio.sleep(self.config.tick)
            try:
                await self._carry_out(self._core.tick(self.clock()))
            except Exception:
                log.exception("tick failed")

    @property
    def _core(self) -> NodeCore:
        assert self.core is not None, "the node is not started"
        return self.core

    # --- carrying out the core's actions ------------------------------------------------------

    async def _carry_out(self, actions: list[Action], peer: Peer | None = None) -> None:
        """Do what the core asked, in order. A worker thread's result goes back to the core
        and its actions are carried out too, before this returns (so a peer's next message
        finds its block imported). ``peer``: the peer whose message this answers; discouraging
        it raises :class:`Misbehaving` for the network to act on, after the rest is done."""
        blame: Discourage | None = None
        loop = asyncio.get_running_loop()
        for action in actions:
            if isinstance(action, Send):
                try:
                    await action.peer.send(action.msg)  # type: ignore[attr-defined]
                except P2PError:
                    if action.peer is peer:
                        raise  # the network ends the conversation with the peer being answered
                    # another peer went away meanwhile (a tick's batch): the rest goes on
            elif isinstance(action, Broadcast):
                if self.network is not None:
                    self.network.broadcast(action.msg, exclude=action.exclude)  # type: ignore[arg-type]
            elif isinstance(action, Discourage):
                if action.peer is peer:
                    blame = action
                else:  # not the peer being answered (cannot happen today): drop it at least
                    action.peer.close(action.reason)  # type: ignore[attr-defined]
            elif isinstance(action, Disconnect):
                action.peer.close(action.reason)  # type: ignore[attr-defined]
            elif isinstance(action, Verify):
                checked, verdict, error = action.checked, None, None
                try:
                    verdict = await loop.run_in_executor(self._work, self.chain.engine.work_verdict, checked.block,
                                                         checked.weights or b"")
                except InvalidBlock as exc:
                    error = exc
                except Exception:  # a bug of ours, not the peer's: the block may come again
                    log.exception("work verdict failed", extra={"hash": checked.hash.hex()[:16]})
                    self._core.abandon(checked)
                    continue
                await self._carry_out(self._core.on_verified(action.peer, checked, verdict, error, self.clock()), peer)
            elif isinstance(action, Evaluate) and action.held:
                # a held candidate, scored because its claim may win: in the background (the
                # tick and the peers go on; one at a time, the round service sees to that)
                task = asyncio.ensure_future(self._evaluate(action))
                self._background.add(task)
                task.add_done_callback(self._evaluate_done)
            elif isinstance(action, Evaluate):
                await self._evaluate(action, peer)
            elif isinstance(action, Retrain):
                self._retrain(action)
            elif isinstance(action, StoreRound):
                self.chain.put_round_record(action.height, action.record)
        if blame is not None:
            raise Misbehaving(blame.reason, blame.detail)

    async def _evaluate(self, action: Evaluate, peer: Peer | None = None) -> int | None:
        """The model step of a candidate off the event loop (tens of ms a candidate, one at a
        time), so a burst of reveals does not stall the node's peers, API and round clock. A
        refusal raises for the API; for a peer's candidate it costs the peer what any refusal
        of its data costs (None then)."""
        rounds = self.rounds
        assert rounds is not None  # only a round service asks for it
        loop = asyncio.get_running_loop()
        try:
            verdict = await loop.run_in_executor(self._evaluator, rounds.evaluate_candidate, action.block,
                                                 action.weights)
            cand, follow = self._core.on_evaluated(action.peer, action.block, action.weights, verdict, self.clock(),
                                                   action.held)
        except ConsensusError as exc:
            await self._carry_out(self._core.on_evaluation_failed(action, exc), peer)  # raises for the API
            return None
        except Exception:  # a bug of ours, not the candidate's: it stays held, to be scored again
            rounds.evaluated(action.block, keep=True)
            raise
        await self._carry_out(follow, peer)
        return cand.score

    def _evaluate_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("evaluating a held candidate failed", exc_info=task.exception())

    def _retrain(self, action: Retrain) -> None:
        """Retrain the round's best in the work thread; the result goes back to the round."""
        engine = self.chain.engine
        assert self._work is not None
        future = asyncio.wrap_future(self._work.submit(engine.work_verdict, action.block, action.weights))

        def done(f: asyncio.Future[Any]) -> None:
            self._background.discard(f)
            if f.cancelled() or self.core is None:
                return
            exc = f.exception()
            if exc is None:
                self.core.on_retrained(action.block, f.result(), "")
            else:
                reason = exc.reason if isinstance(exc, InvalidBlock) else f"retrain-error: {type(exc).__name__}"
                self.core.on_retrained(action.block, None, reason)

        self._background.add(future)
        future.add_done_callback(done)

    # --- views and submissions (the API's NodeView) -------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._core.status(self.clock())

    def peers_info(self) -> list[dict[str, Any]]:
        if self.network is None:
            return []
        return [
            {"node_id": p.node_id.hex(), "host": p.host, "port": p.port, "direction": p.direction,
             "height": p.best_height, "since": p.connected_since}
            for p in self.network.peers
        ]

    def refresh_metrics(self) -> None:
        self._core.refresh_metrics()

    async def submit_tx(self, tx: Transfer) -> bytes:
        return self._core.submit_tx(tx, self.clock())

    async def submit_commitment(self, c: Commitment) -> int:
        index, actions = self._core.submit_commitment(c, self.clock())
        await self._carry_out(actions)
        return index

    async def submit_candidate(self, block: Block, weights: bytes) -> int:
        step = self._core.submit_candidate(block, weights, self.clock())
        if isinstance(step, Evaluate):
            score = await self._evaluate(step)
            assert score is not None  # an API submission's refusal raises
            return score
        return step.score

    # --- P2P handler (p2p.network.Handler) -----------------------------------------------------

    def best(self) -> tuple[int, bytes]:
        return self._core.best()

    async def on_peer_connected(self, peer: Peer) -> None:
        await self._carry_out(self._core.on_connected(peer, peer.best_height), peer)

    async def on_peer_disconnected(self, peer: Peer, reason: str) -> None:
        await self._carry_out(self._core.on_disconnected(peer))

    async def on_message(self, peer: Peer, msg: Any) -> None:
        await self._carry_out(self._core.on_message(peer, msg, self.clock()), peer)


__all__ = ["Node", "NodeConfig"]  # NodeConfig lives in node.config; here for its users
