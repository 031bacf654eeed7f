"""The node's protocol, sans-I/O: what to do with each peer message, API submission and tick.

:class:`NodeCore` owns the chain, the mempool, the round service, the relay and the sync. Every
entry point takes the clock's reading and returns :mod:`node.actions` for the service to carry
out; nothing here awaits, sleeps or touches a socket, so the whole protocol can be driven by a
test with a fake clock and fake peers.

The path of a block from a peer, in one direction:

1. :meth:`Chain.check` once: known, parent, weights hash, header, seal, body (a failure is
   the peer's fault unless benign). A block that would not join the canonical chain is stored
   on a side branch at once.
2. One that would: a :class:`~node.actions.Verify` action. The service computes the engine's
   work verdict (for ``ponas``: the model scored, and retrained under that policy) in a worker
   thread and hands it to :meth:`NodeCore.on_verified`, before the peer's next message.
3. :meth:`Chain.import_checked` with that verdict (the state transition, then the work check
   against the verdict), then :meth:`after_import`: the one place that updates the mempool,
   the metrics, relays the block and keeps the sync going.

Round candidates go the same way with :class:`~node.actions.Evaluate`, and the round's best is
retrained with :class:`~node.actions.Retrain` while the reveal window is open.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from consensus.errors import ConsensusError, InvalidBlock, InvalidRound, InvalidTransaction
from consensus.params import ChainParams
from consensus.types import Block, Commitment, Transfer
from node.actions import Action, Broadcast, Evaluate, PeerRef, Retrain, Send, StoreRound, Verify
from node.chain import Chain, Checked, ImportResult, ImportStatus, Status
from node.mempool import Mempool
from node.metrics import Metrics
from node.relay import Relay
from node.rounds import CLOSE_SKEW, Announce, AnnounceKind, Candidate, RoundService
from node.sync import GETBLOCKS_BATCH, Sync
from p2p import messages as M

log = logging.getLogger("ponas.node")

#: Seconds between mempool expiry and seen-set pruning.
HOUSEKEEPING_EVERY = 60.0


class NodeCore:
    def __init__(
        self, params: ChainParams, chain: Chain, mempool: Mempool, rounds: RoundService | None, metrics: Metrics,
        now: float,
    ) -> None:
        self.params = params
        self.chain = chain
        self.mempool = mempool
        self.rounds = rounds
        self.metrics = metrics
        self.relay = Relay()
        self.sync = Sync(chain)
        self._verifying: set[bytes] = set()  # blocks whose work verdict is being computed
        #: parents named by closes signed by the closer that this node did not have as its tip
        self._named_parents: OrderedDict[bytes, None] = OrderedDict()
        self._housekept = now

    # --- peers --------------------------------------------------------------------------------

    def best(self) -> tuple[int, bytes]:
        return self.chain.height, self.chain.tip_hash

    def on_connected(self, peer: PeerRef, height: int) -> list[Action]:
        self.relay.connected(peer)
        out = self.sync.connected(peer, height)
        if self.rounds is not None and self.rounds.round.close is not None:
            r = self.rounds.round
            out.append(Send(peer, M.CloseMsg(r.close, tuple(r.ordered))))  # type: ignore[arg-type]
            if r.reveal_set is not None:
                out.append(Send(peer, M.RevealSetMsg(r.reveal_set)))
        return out

    def on_disconnected(self, peer: PeerRef) -> list[Action]:
        self.relay.disconnected(peer)
        return self.sync.disconnected(peer)

    def on_message(self, peer: PeerRef, msg: Any, now: float) -> list[Action]:
        """A peer's message; a refusal costs the peer what :meth:`Relay.refused` says."""
        try:
            return self._dispatch(peer, msg, now)
        except ConsensusError as exc:
            return self.refused(peer, exc)

    def refused(self, peer: PeerRef, exc: ConsensusError) -> list[Action]:
        """Count a refusal of the peer's data, and what it costs the peer (nothing if benign)."""
        self.metrics.rejects.labels("p2p", exc.reason).inc()
        out = self.relay.refused(peer, exc.reason, exc.detail)
        if not out:
            log.debug("ignored", extra={"peer": str(peer), "reason": exc.reason})
        return out

    def _dispatch(self, peer: PeerRef, msg: Any, now: float) -> list[Action]:
        if isinstance(msg, (M.TxMsg, M.TxBatch)):
            for tx in (msg.tx,) if isinstance(msg, M.TxMsg) else msg.txs:
                if self.relay.is_seen(tx.hash()):
                    continue
                try:
                    self.submit_tx(tx, now, peer)
                except ConsensusError as exc:  # races (nonces, a full pool) are no fault
                    self.relay.mark(tx.hash(), now)
                    if self.relay.refused(peer, exc.reason, exc.detail):
                        raise
                    # ... but a race is between transfers that their senders signed: a benign
                    # refusal of a forgery (random signature, unfunded) costs the relayer, who
                    # must have checked the signature before relaying it
                    if not tx.has_valid_signature(self.params.chain_id):
                        raise InvalidTransaction("bad-signature", f"{exc.reason}, and not signed by its sender") from None
            return []
        if isinstance(msg, M.CommitmentMsg):
            if self.rounds is None or self.relay.is_seen(msg.commitment.hash()):
                return []
            try:
                return self.submit_commitment(msg.commitment, now, peer)[1]
            except InvalidRound as exc:
                # for the round after a block still on its way: admitted when that round opens
                if exc.reason != "commit-wrong-round" or not self.rounds.keep_early(msg.commitment):
                    raise
                return []
        if isinstance(msg, M.CloseMsg):
            return self._on_close(peer, msg, now)
        if isinstance(msg, M.RevealSetMsg):
            h = msg.reveal_set.hash()
            if self.rounds is None or self.relay.is_seen(h):
                return []
            new = self.rounds.add_reveal_set(msg.reveal_set, now)
            return self.relay.announce(h, msg, now, peer) if new else []
        if isinstance(msg, M.BlockMsg):
            if not msg.candidate:
                return self.on_block(peer, msg.block, msg.weights, now)
            h = msg.block.header.hash()
            if self.rounds is None or h in self.rounds.round.candidates or h in self.rounds.round.held:
                return []
            return self.relay_candidate(msg.block, msg.weights, now, peer)
        if isinstance(msg, M.GetHeaders):
            return self.sync.on_get_headers(peer, msg)
        if isinstance(msg, M.Headers):
            return self.sync.on_headers(peer, msg.headers, now)
        if isinstance(msg, M.GetBlocks):
            return self._serve_blocks(peer, msg)
        if isinstance(msg, M.NotFound):
            return self.sync.on_not_found(peer, msg.hashes)
        return []

    def _serve_blocks(self, peer: PeerRef, msg: M.GetBlocks) -> list[Action]:
        out: list[Action] = []
        missing = []
        for h in msg.hashes[:GETBLOCKS_BATCH]:
            block = self.chain.get_block(h)
            # else a candidate of the round, scored or held (a node missing one its reveal set lists)
            cand = self.rounds.candidate_data(h) if self.rounds is not None else None
            if block is not None:
                out.append(Send(peer, M.BlockMsg(block, self.chain.get_weights(block.header.weights_hash) or b"", False)))
            elif cand is not None:
                out.append(Send(peer, M.BlockMsg(cand[0], cand[1], True)))
            else:
                missing.append(h)
        if missing:
            out.append(Send(peer, M.NotFound(tuple(missing))))
        return out

    def _on_close(self, peer: PeerRef, msg: M.CloseMsg, now: float) -> list[Action]:
        if self.rounds is None:
            return []
        try:
            new = self.rounds.add_close(msg.close, msg.commitments, now)
        except InvalidRound as exc:
            if exc.reason in ("close-ahead", "close-other-parent"):
                # not taken (counted), but the closer's word on what it builds on: remember the
                # parent it names and ask this peer what it has (a node behind catches up)
                self.metrics.rejects.labels("p2p", exc.reason).inc()
                self._note_named_parent(msg.close)
                return self.sync.request_headers(peer)
            raise
        return self.relay.announce(msg.close.hash(), msg, now, peer) if new else []

    def _note_named_parent(self, close: Any) -> None:
        """Remember the parent a close signed by the closer names (a block this node may have
        refused as a late sibling of its tip: the closer's word makes it final)."""
        from consensus.crypto import verify
        from consensus.engines.ponas.rounds import expected_closers

        if close.closer in expected_closers(close.task_id, self.params.ponas) and \
                verify(close.closer, close.digest(self.params.chain_id), close.signature):
            self._named_parents[close.parent] = None
            while len(self._named_parents) > 64:
                self._named_parents.popitem(last=False)

    # --- blocks -------------------------------------------------------------------------------

    def on_block(self, peer: PeerRef | None, block: Block, weights: bytes, now: float) -> list[Action]:
        """A relayed or synced block: checked once here; one that would join the canonical
        chain goes to a :class:`Verify` first, a side block is stored at once."""
        h = block.header.hash()
        asked = h in self.sync.requested  # fetched by our headers-first sync (not pushed at us)
        out = self.sync.on_block(peer, h, now) if peer is not None else []
        known = self.chain.index.get(h)
        if (known is not None and known.status >= Status.DATA) or h in self._verifying:
            return out
        if self.rounds is not None and block.header.height < self.chain.height:
            # The close of the round after this height named our block as parent: final.
            raise InvalidBlock("round-final", f"height {block.header.height} is final on this node")
        route = "block"
        if self.rounds is not None and block.proof is not None:
            # The reveal set decides a round: a block of a round decided here is refused unless
            # it is the block taken (RoundService.route_block: even if a close names it, unless
            # the set ranks it above the block taken); a block of the round in progress joins
            # its candidates (the selection takes it if it is the set's winner).
            route = self.rounds.route_block(block, named=h in self._named_parents)
        if (self.rounds is not None and block.proof is not None and block.header.height == self.chain.height
                and h != self.chain.tip_hash and h not in self._named_parents and not asked):
            # A sibling of the tip (of a round this node decided without a reveal set) pushed at
            # us a whole reveal window after its round ended was held back: taken now, being
            # heavier, it would reorg the tip and erase the next round's commitments (attack 4).
            # Honest relays take seconds. A close that names it (the closer's word) makes this
            # node take it, and so does its own headers-first sync (a node that was cut off
            # catches up with the chain the others follow).
            late = block.proof.close.timestamp + 2 * self.params.ponas.reveal_window
            if now > late:
                raise InvalidBlock("round-final", f"a sibling of the tip at height {block.header.height}, "
                                                  f"{now - late + self.params.ponas.reveal_window:.0f}s after its "
                                                  "round ended")
        if self.rounds is not None and block.proof is not None and block.header.height == self.chain.height + 1:
            # A block of the round in progress is chosen at the end of its reveal window, among
            # every candidate: one sent as a block before then would skip the window and make
            # the honest candidates late (attack 3). It may come again as a candidate.
            end = block.proof.close.timestamp + self.params.ponas.reveal_window
            if now < end - CLOSE_SKEW:
                raise InvalidBlock("reveal-window-open", f"the reveal window of round {block.header.height} ends in "
                                                         f"{end - now:.0f}s: a candidate is sent as a candidate")
        if route == "candidate":
            return out + self.relay_candidate(block, weights, now, peer)
        try:
            checked = self.chain.check(block, weights or None)
        except InvalidBlock as exc:
            if exc.reason == "unknown-parent" and block.header.parent in self._verifying:
                # its parent is being verified (a retrain can take a while on a busy machine):
                # asking for headers again would fetch the same two blocks again and again, a
                # loop that starves the verification and gets us dropped for flooding. The
                # child comes again once the parent is in (the sync asks for what follows).
                return out
            if exc.reason == "unknown-parent" and peer is not None:
                return out + self.sync.request_headers(peer)
            raise
        if isinstance(checked, ImportResult):
            return out
        if checked.connects:
            self._verifying.add(h)
            return out + [Verify(peer, checked)]
        return out + self.after_import(self.chain.import_checked(checked, self.mempool.verified), peer, now)

    def on_verified(
        self, peer: PeerRef | None, checked: Checked, verdict: object, error: InvalidBlock | None, now: float,
    ) -> list[Action]:
        """The work verdict of a :class:`Verify` (or the reason the work is bad): import."""
        self._verifying.discard(checked.hash)
        try:
            if error is not None:
                if error.reason != "missing-weights":  # sent again with its weights, it may pass
                    self.chain.mark_failed(checked)
                raise error
            result = self.chain.import_checked(checked, self.mempool.verified, verdict)
        except ConsensusError as exc:
            return self.refused(peer, exc) if peer is not None else []
        return self.after_import(result, peer, now)

    def abandon(self, checked: Checked) -> None:
        """A :class:`Verify` that ended without a verdict (our own failure): forget it, so the
        block is handled again when it comes again."""
        self._verifying.discard(checked.hash)

    def after_import(self, result: ImportResult, peer: PeerRef | None, now: float) -> list[Action]:
        """After any import that may have moved the tip: the mempool, the metrics, relay, and
        more headers for a peer we sync from."""
        if not result.changed_tip:
            return []
        self.metrics.blocks.labels(str(result.status)).inc()
        self.mempool.after_import(result)
        out: list[Action] = []
        block = result.connected[-1]
        if not self.sync.active or peer is None:
            weights = self.chain.get_weights(block.header.weights_hash) or b""
            out += self.relay.announce(result.block_hash, M.BlockMsg(block, weights, False), now, peer)
        if peer is not None:
            out += self.sync.after_connect(peer, result.new_tip != result.old_tip)
        return out

    # --- submissions (API and P2P) ------------------------------------------------------------

    def submit_tx(self, tx: Transfer, now: float, origin: PeerRef | None = None) -> bytes:
        h = self.mempool.add(tx)
        self.relay.queue_tx(tx, h, now, origin)  # relayed in batches by the tick
        return h

    def submit_commitment(self, c: Commitment, now: float, origin: PeerRef | None = None) -> tuple[int, list[Action]]:
        rounds = self._need_rounds()
        new = rounds.add_commitment(c, now)
        out = self.relay.announce(c.hash(), M.CommitmentMsg(c), now, origin) if new else []
        return rounds.round.commitments.index(c), out

    def submit_candidate(
        self, block: Block, weights: bytes, now: float, origin: PeerRef | None = None,
    ) -> Candidate | Evaluate:
        """A miner's candidate (through the API): the chain checks here, then an
        :class:`Evaluate` of its model at once, so that the miner gets its score or the refusal
        (or the candidate, if it was admitted already)."""
        known = self._need_rounds().check_candidate(block, now)
        return known if known is not None else Evaluate(origin, block, weights)

    def relay_candidate(self, block: Block, weights: bytes, now: float, peer: PeerRef) -> list[Action]:
        """A candidate from a peer: the chain checks, then it is relayed at once and held, to be
        scored when its claim may win (:meth:`RoundService.next_evaluation`, from the tick). A
        node scores in claim order and stops at the first valid candidate; the relay does not
        wait for a score it may never need (the relayer does not vouch for the model: a false
        claim costs its miner's key, not the peer)."""
        rounds = self._need_rounds()
        if rounds.check_candidate(block, now) is not None:
            return []
        rounds.hold_candidate(block, weights, peer)
        return self.relay.announce(block.header.hash(), M.BlockMsg(block, weights, True), now, peer)

    def on_evaluated(
        self, origin: PeerRef | None, block: Block, weights: bytes, verdict: Any, now: float, held: bool = False,
    ) -> tuple[Candidate, list[Action]]:
        """The model verdict of an :class:`Evaluate`: admit the candidate (if its round is
        still the current one), start the best's retrain, relay it (a held one was relayed
        already)."""
        rounds = self._need_rounds()
        rounds.evaluated(block)
        cand = rounds.admit_candidate(block, weights, verdict)
        out: list[Action] = self._announced([a for a in [rounds.next_retrain()] if a is not None], now)
        if not held:
            out += self.relay.announce(block.header.hash(), M.BlockMsg(block, weights, True), now, origin)
        return cand, out

    def on_evaluation_failed(self, action: Evaluate, exc: ConsensusError) -> list[Action]:
        """The model step (or the admission after it) refused a candidate: it is out of the
        round and its miner penalised. A miner's own submission hears the refusal (raised); a
        peer that sent a candidate scored at once pays as for any refusal; a held candidate's
        relayer pays nothing (it did not vouch for the model), the refusal is only counted."""
        rounds = self._need_rounds()
        rounds.evaluated(action.block)
        if isinstance(exc, InvalidBlock) and exc.reason not in ("wrong-close", "bad-prevblk"):
            rounds.reject_candidate(action.block, exc.reason)
        if action.peer is None:
            raise exc
        if action.held:
            self.metrics.rejects.labels("p2p", exc.reason).inc()
            log.info("held candidate refused", extra={"reason": exc.reason, "hash": action.block.header.hash().hex()[:16]})
            return []
        return self.refused(action.peer, exc)

    def on_retrained(self, block: Block, verdict: Any, reason: str) -> None:
        self._need_rounds().on_retrained(block.header.hash(), verdict, reason)

    def _need_rounds(self) -> RoundService:
        if self.rounds is None:
            raise InvalidRound("no-rounds", "this chain's engine has no rounds")
        return self.rounds

    # --- the clock ----------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        out = self.relay.flush_txs() + self.sync.tick(now)
        if self.rounds is not None:
            out += self._announced(self.rounds.tick(now), now)
            held = self.rounds.next_evaluation(now)
            if held is not None:
                block, weights, origin = held
                out.append(Evaluate(origin, block, weights, held=True))
        if now - self._housekept > HOUSEKEEPING_EVERY:
            self._housekept = now
            self.mempool.expire()
            self.relay.prune(now)
        return out

    def _announced(self, announces: list[Announce], now: float) -> list[Action]:
        out: list[Action] = []
        for ann in announces:
            if ann.kind is AnnounceKind.COMMITMENT and ann.commitment is not None:
                self.relay.mark(ann.commitment.hash(), now)
                out.append(Broadcast(M.CommitmentMsg(ann.commitment)))
            elif ann.kind is AnnounceKind.CLOSE and ann.close is not None:
                self.relay.mark(ann.close.hash(), now)
                out.append(Broadcast(M.CloseMsg(ann.close, ann.commitments)))
            elif ann.kind is AnnounceKind.BLOCK and ann.block is not None and ann.result is not None:
                self.metrics.blocks.labels(str(ann.result.status)).inc()
                self.mempool.after_import(ann.result)
                self.relay.mark(ann.block.header.hash(), now)
                out.append(Broadcast(M.BlockMsg(ann.block, ann.weights, False)))
                if ann.record is not None:
                    out.append(StoreRound(ann.block.header.height, ann.record))
            elif ann.kind is AnnounceKind.RECORD and ann.record is not None:
                out.append(StoreRound(ann.record["height"], ann.record))
            elif ann.kind is AnnounceKind.RETRAIN and ann.block is not None:
                out.append(Retrain(ann.block, ann.weights))
            elif ann.kind is AnnounceKind.REVEAL_SET and ann.reveal_set is not None:
                self.relay.mark(ann.reveal_set.hash(), now)
                out.append(Broadcast(M.RevealSetMsg(ann.reveal_set)))
            elif ann.kind is AnnounceKind.FETCH and ann.hashes:
                out.append(Broadcast(M.GetBlocks(ann.hashes)))
        return out

    # --- views --------------------------------------------------------------------------------

    def status(self, now: float) -> dict[str, Any]:
        chain = self.chain
        return {
            "chain_id": self.params.chain_id, "genesis": chain.genesis_hash.hex(), "engine": self.params.engine,
            "height": chain.height, "tip": chain.tip_hash.hex(), "state_root": chain.tip.state_root.hex(),
            "peers": len(self.relay.peers),
            "round": self.rounds.info(now) if self.rounds else None,
            "mempool": len(self.mempool), "syncing": self.sync.active,
        }

    def refresh_metrics(self) -> None:
        m = self.metrics
        m.height.set(self.chain.height)
        m.peers.set(len(self.relay.peers))
        m.mempool.set(len(self.mempool))
        if self.rounds is not None:
            r = self.rounds.round
            m.round_commitments.set(len(r.ordered) if r.close else len(r.commitments))


__all__ = ["NodeCore", "ImportStatus"]
