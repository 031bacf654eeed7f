"""``ponas wallet`` against two real nodes on 127.0.0.1 (node 0 closes rounds, a solo miner
mines against node 1 with the no-proof verifier: the wallet does not care how a block's model
was checked, and no model is trained): two wallets are created, one is funded by a genesis prefund,
it sends to the other and waits for the block; both balances are right on every node and
both histories show the transfer (the miner's wallet sees its coinbase payouts). Bad input is
refused with its reason and nothing is sent; a transfer signed while the node is down is kept
and resubmitted. Commands run in-process through the real CLI entry point."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consensus.amounts import parse_amount
from consensus.crypto import parse_address
from consensus.types import COIN, Payout
from node.cli import main
from tests.framework.miner import noproof_miner
from tests.framework.nodes import same_tip, start_node, wait_for
from tests.framework.noproof import noproof_engine
from tests.framework.procs import free_port
from tests.ponas_builders import ponas_params


class Wallets:
    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home, self.capsys = home, capsys
        home.mkdir(parents=True, exist_ok=True)
        (home / "pw").write_text("correct horse\n")
        (home / "wrong").write_text("battery staple\n")

    async def __call__(self, *argv: str, password: str = "pw") -> tuple[int, Any, str]:
        """Run ``ponas wallet ARGV --json``; returns (exit code, JSON out, stderr)."""
        args = ["wallet", *argv, "--json", "--home", str(self.home), "--password-file", str(self.home / password)]
        rc = await asyncio.to_thread(main, args)
        captured = self.capsys.readouterr()
        return rc, json.loads(captured.out) if captured.out.strip() else None, captured.err


async def test_wallets_send_wait_balances_history_and_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = Wallets(tmp_path, capsys)
    created = {}
    for name in ("alice", "bob", "miner"):
        rc, out, _ = await w("create", "-w", name, "--words", "12")
        assert rc == 0 and len(out["mnemonic"].split()) == 12
        created[name] = out["address"]
    alice, bob = created["alice"], created["bob"]
    params = replace(ponas_params(commit_window=4, reveal_window=2), genesis_time=int(time.time()),
                     prefunds=(Payout(parse_address(alice), 1000 * COIN),))
    n0 = await start_node(tmp_path, "n0", params, closer=True, engine=noproof_engine(params))
    n1 = await start_node(tmp_path, "n1", params, peers=[n0], engine=noproof_engine(params))
    nodes = [n0, n1]
    url = [f"http://127.0.0.1:{n.api_port}" for n in nodes]
    stop = asyncio.Event()
    miner = noproof_miner(url[1], parse_address(created["miner"]), n1.token)
    mining = asyncio.create_task(miner.run(stop))
    try:
        rc, bal, _ = await w("balance", "-w", "alice", "--node", url[0])
        assert rc == 0 and bal["balance"] == 1000 * COIN and bal["pending"] == 0

        # --- bad inputs: a clear reason, exit 1, nothing signed or sent ----------------------
        typo = bob[:-1] + ("q" if bob[-1] != "q" else "p")
        cases = [
            ((typo, "1"), "bad-checksum"),
            ((bob, "-1"), "bad-amount"),
            ((bob, "0"), "bad-amount"),
            ((bob, "1e9999"), "bad-amount"),
            ((bob, "0.000000001"), "too-precise"),
            ((bob, "abc"), "bad-amount"),
            ((bob, "5000"), "insufficient-funds"),  # refused before submitting
            ((bob, "999.99999001"), "insufficient-funds"),  # the amount fits, amount + fee does not
            ((bob, "1", "--fee", "0.000001"), "fee-too-low"),
        ]
        for argv, reason in cases:
            rc, out, err = await w("send", *argv, "-w", "alice", "--node", url[0])
            assert rc == 1 and out["error"]["reason"] == reason, (argv, out)
            assert f"error: {reason}" in err
        rc, out, _ = await w("send", bob, "1", "-w", "alice", "--node", url[0], password="wrong")
        assert rc == 1 and out["error"]["reason"] == "bad-password"
        assert len(n0.mempool) == 0 and not (tmp_path / "wallets" / "alice.outbox.json").exists()

        # --- a real transfer, waited for ----------------------------------------------------
        rc, sent, err = await w("send", bob, "12.5", "-w", "alice", "--node", url[1], "--wait", "--wait-timeout", "120")
        assert rc == 0, err
        assert sent["status"] == "confirmed" and sent["amount"] == parse_amount("12.5") and sent["height"] >= 1
        fee = sent["fee"]
        assert fee == 1000  # the node's suggestion with an empty mempool: its minimum relay fee
        await wait_for(lambda: same_tip(nodes) and min(n.chain.height for n in nodes) >= sent["height"], 30, "both nodes")
        for u in url:
            _, a, _ = await w("balance", "-w", "alice", "--node", u)
            _, b, _ = await w("balance", "-w", "bob", "--node", u)
            assert a["balance"] == 1000 * COIN - parse_amount("12.5") - fee
            assert b["balance"] == parse_amount("12.5")
        rc, ha, _ = await w("history", "-w", "alice", "--node", url[0])
        assert [(i["kind"], i.get("direction"), i["delta"]) for i in ha["items"]] == [
            ("transfer", "out", -(parse_amount("12.5") + fee)), ("genesis", "in", 1000 * COIN)]
        assert ha["items"][0]["hash"] == sent["hash"] and ha["items"][0]["to"] == bob
        rc, hb, _ = await w("history", "-w", "bob", "--node", url[1])
        assert [(i["kind"], i["direction"], i["delta"], i["from"]) for i in hb["items"]] == [
            ("transfer", "in", parse_amount("12.5"), alice)]
        rc, tx, _ = await w("tx", sent["hash"], "--node", url[0])
        assert rc == 0 and tx["status"] == "confirmed" and tx["height"] == sent["height"]
        rc, hm, _ = await w("history", "-w", "miner", "--node", url[0])
        assert hm["items"] and all(i["kind"] == "coinbase" and i["delta"] > 0 for i in hm["items"])

        # --- the node is down: a transfer signed offline is kept, then resubmitted ------------
        dead = f"http://127.0.0.1:{free_port()}"
        rc, out, err = await w("balance", "-w", "alice", "--node", dead)
        assert rc == 1 and out["error"]["reason"] == "unreachable"
        rc, out, err = await w("send", bob, "1", "-w", "alice", "--node", dead)
        assert rc == 1 and out["error"]["reason"] == "unreachable"  # nothing signed without the node's nonce
        rc, kept, _ = await w("send", bob, "2", "-w", "alice", "--node", dead, "--offline", "--chain-id", params.chain_id,
                              "--nonce", "1", "--fee", "0.0001")
        assert rc == 0 and kept["status"] == "kept"
        rc, out, _ = await w("tx", kept["hash"], "-w", "alice", "--node", url[0])
        assert out["status"] == "kept, not sent"
        rc, hist, _ = await w("history", "-w", "alice", "--node", url[0])
        assert hist["items"][0]["status"] == "not sent" and hist["items"][0]["hash"] == kept["hash"]
        rc, out, _ = await w("resend", "-w", "alice", "--node", url[0])
        assert rc == 0 and [r["result"] for r in out["results"]] == ["submitted"]
        await wait_for(lambda: n1.chain.find_tx(bytes.fromhex(kept["hash"])) is not None, 60, "the resent transfer mined", 0.25)
        rc, out, _ = await w("resend", "-w", "alice", "--node", url[1])
        assert [r["result"] for r in out["results"]] == ["confirmed"]
        rc, out, _ = await w("resend", "-w", "alice", "--node", url[1])
        assert out["results"] == []
        _, b, _ = await w("balance", "-w", "bob", "--node", url[1])
        assert b["balance"] == parse_amount("14.5")
    finally:
        stop.set()
        await asyncio.gather(mining, return_exceptions=True)
        for n in nodes:
            await n.stop()


async def test_mnemonic_round_trip_on_a_fresh_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = Wallets(tmp_path / "one", capsys)
    rc, made, _ = await first("create", "-w", "main")
    assert rc == 0
    (tmp_path / "words").write_text(made["mnemonic"].upper() + "\n")
    second = Wallets(tmp_path / "two", capsys)
    rc, restored, _ = await second("import", "-w", "restored", "--mnemonic-file", str(tmp_path / "words"))
    assert rc == 0 and restored["addresses"] == [made["address"]]
    rc, listed, _ = await second("list")
    assert [(x["wallet"], x["address"]) for x in listed["wallets"]] == [("restored", made["address"])]
    (tmp_path / "bad").write_text(" ".join(made["mnemonic"].split()[::-1]))
    rc, out, _ = await second("import", "-w", "other", "--mnemonic-file", str(tmp_path / "bad"))
    assert rc == 1 and out["error"]["reason"] == "bad-mnemonic"
    assert not (tmp_path / "two" / "wallets" / "other.wallet").exists()
    rc, out, _ = await second("import", "-w", "restored", "--mnemonic-file", str(tmp_path / "words"))
    assert rc == 1 and out["error"]["reason"] == "wallet-exists"
    # a truncated keystore: a clear error, and the file is left as it is for recovery
    path = tmp_path / "two" / "wallets" / "restored.wallet"
    data = path.read_bytes()
    path.write_bytes(data[:100])
    rc, out, _ = await second("address", "-w", "restored", "--new")
    assert rc == 1 and out["error"]["reason"] == "bad-keystore"
    assert path.read_bytes() == data[:100]


async def test_node_dies_between_signing_and_submitting(tmp_path: Path) -> None:
    """The transfer was planned against a live node, the node went down before the submit:
    the signed transfer is on disk in the outbox, and ``resend`` delivers it after a restart."""
    from nodeclient import NodeClient, NodeUnavailable, session
    from wallet import actions
    from wallet.keys import new_mnemonic
    from wallet.keystore import Keystore, Outbox

    store = Keystore.create(str(tmp_path / "home"), "w", new_mnemonic(12), "pw", kdf={"n": 1024, "r": 8, "p": 1})
    to = Keystore.create(str(tmp_path / "home"), "to", new_mnemonic(12), "pw", kdf={"n": 1024, "r": 8, "p": 1})
    params = replace(ponas_params(), prefunds=(Payout(store.addresses[0], 10 * COIN),))
    node = await start_node(tmp_path, "n0", params, engine=noproof_engine(params))
    port = node.api_port
    async with session() as http:
        client = NodeClient(http, f"http://127.0.0.1:{port}")
        outbox = Outbox.for_wallet(store)
        plan = await actions.prepare_send(client, store.addresses, outbox, to.addresses[0], COIN)
        entry = actions.sign_and_keep(plan, store.unlock("pw"), outbox)
        await node.stop()
        with pytest.raises(NodeUnavailable):
            await actions.submit(client, outbox, entry)
    kept = Outbox.for_wallet(Keystore.load(str(tmp_path / "home"), "w"))
    assert [e.hash for e in kept] == [entry.hash] and not kept.entries[0].submitted
    node = await start_node(tmp_path, "n0", params, engine=noproof_engine(params), api_port=port)
    try:
        async with session() as http:
            results = await actions.resend(NodeClient(http, f"http://127.0.0.1:{port}"), kept)
        assert [r for _, r in results] == ["submitted"]
        assert node.mempool.get(entry.hash) is not None
        # a second plan takes the next nonce, after the one waiting in the mempool
        async with session() as http:
            nxt = await actions.prepare_send(NodeClient(http, f"http://127.0.0.1:{port}"), store.addresses, kept,
                                             to.addresses[0], COIN)
        assert nxt.nonce == 1 and nxt.available == 9 * COIN - 1000
    finally:
        await node.stop()
