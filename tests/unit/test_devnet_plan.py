"""The devnet's plan, without starting anything: every process it would start is a real
``ponas`` command line (parsed by the real parser into the right command), wired as the
topology says; ports, topology limits and the table's short genotypes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from consensus.errors import ConsensusError
from node import devnet
from node.cli import build_parser, cmd_node_run
from pool.cli import cmd_mine, cmd_pool_join, cmd_pool_serve

COMMANDS = {"node": cmd_node_run, "pool": cmd_pool_serve, "member": cmd_pool_join, "solo": cmd_mine}


def parse(argv: list[str]):  # type: ignore[no-untyped-def]
    prefix = devnet.ponas_argv()
    assert argv[: len(prefix)] == prefix
    return build_parser().parse_args(argv[len(prefix):])


def accounts(topo: devnet.Topology) -> dict[str, str]:
    from consensus.crypto import PrivateKey, format_address

    names = ["pool", "pool-fee"] + [f"member{i}" for i in range(topo.pool_members)] + [f"solo{i}" for i in range(topo.solo)]
    return {n: format_address(PrivateKey.generate().address) for n in names}


def test_every_process_is_a_real_ponas_command_wired_as_the_topology_says(tmp_path: Path) -> None:
    topo = devnet.Topology(nodes=3, pool_members=3, solo=2, preset="regtest").check()
    ports = devnet.plan_ports(topo, 28400)
    accts = accounts(topo)
    procs = devnet.plan_processes(tmp_path, topo, ports, accts)
    assert [p["name"] for p in procs] == ["node0", "node1", "node2", "pool", "member0", "member1", "member2", "solo0", "solo1"]
    parsed = {p["name"]: parse(p["argv"]) for p in procs}
    for p in procs:
        assert parsed[p["name"]].func is COMMANDS[p["role"]], p["name"]
        assert p["log"] == str(tmp_path / "logs" / f"{p['name']}.log")
    # nodes: node0 closes with the beacon's key, every later node peers with every earlier one
    assert parsed["node0"].closer_key == str(tmp_path / "beacon.key")
    assert parsed["node1"].closer_key is None and parsed["node2"].closer_key is None
    assert parsed["node0"].peer == []
    assert parsed["node2"].peer == [f"127.0.0.1:{ports['node0.p2p']}", f"127.0.0.1:{ports['node1.p2p']}"]
    assert [parsed[f"node{i}"].api_port for i in range(3)] == [28400, 28401, 28402]
    assert [parsed[f"node{i}"].p2p_port for i in range(3)] == [28500, 28501, 28502]
    # the pool commits through node1 with node1's cookie; members join it; solo miners use node2
    assert parsed["pool"].node == "http://127.0.0.1:28401" and parsed["pool"].port == 28600
    assert parsed["pool"].token_file == str(tmp_path / "node1" / ".cookie")
    assert parsed["pool"].address == accts["pool-fee"]
    for i in range(3):
        m = parsed[f"member{i}"]
        assert m.url == "ws://127.0.0.1:28600/ws" and m.address == accts[f"member{i}"]
        assert m.key == str(tmp_path / "keys" / f"member{i}.key")
    for i in range(2):
        s = parsed[f"solo{i}"]
        assert s.node == "http://127.0.0.1:28402" and s.token_file == str(tmp_path / "node2" / ".cookie")
        assert s.address == accts[f"solo{i}"]
    assert parsed["pool"].commit_keys == 1  # one key unless --pool-keys says otherwise
    keyed = devnet.Topology(nodes=2, pool_members=2, solo=1, pool_keys=4).check()
    pool = next(p for p in devnet.plan_processes(tmp_path, keyed, devnet.plan_ports(keyed, 28400), accounts(keyed))
                if p["name"] == "pool")
    assert parse(pool["argv"]).commit_keys == 4
    # miners yield the CPU to nodes
    assert {p["nice"] for p in procs if p["role"] in ("member", "solo")} == {devnet.MINER_NICE}
    assert {p["nice"] for p in procs if p["role"] in ("node", "pool")} == {0}


def test_one_node_and_no_pool() -> None:
    topo = devnet.Topology(nodes=1, pool_members=0, solo=1).check()
    ports = devnet.plan_ports(topo, 30000)
    assert ports == {"node0.api": 30000, "node0.p2p": 30100}
    procs = devnet.plan_processes(Path("/x"), topo, ports, accounts(topo))
    assert [p["role"] for p in procs] == ["node", "solo"]
    assert parse(procs[1]["argv"]).node == "http://127.0.0.1:30000"


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = devnet.plan_ports(devnet.Topology(), 0)
    assert len(ports) == 7 and len(set(ports.values())) == 7
    devnet.check_ports_free(ports)


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConsensusError) as exc:
            devnet.check_ports_free({"node0.api": port})
    assert exc.value.reason == "port-in-use" and str(port) in exc.value.detail and "node0.api" in exc.value.detail


@pytest.mark.parametrize("kwargs", [
    {"nodes": 0}, {"nodes": devnet.MAX_NODES + 1}, {"pool_members": -1}, {"solo": devnet.MAX_SOLO + 1},
    {"pool_members": 0, "solo": 0}, {"preset": "mainnet"}, {"pool_keys": 0}, {"pool_keys": devnet.MAX_POOL_KEYS + 1},
])
def test_topology_limits(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConsensusError) as exc:
        devnet.Topology(**kwargs).check()  # type: ignore[arg-type]
    assert exc.value.reason == "bad-args"


@pytest.mark.parametrize("base", [80, 65500, -1])
def test_base_port_range(base: int) -> None:
    with pytest.raises(ConsensusError) as exc:
        devnet.plan_ports(devnet.Topology(), base)
    assert exc.value.reason == "bad-args"


def test_brief_genotype() -> None:
    g = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    assert devnet.brief_genotype(g) == "3+s-+p13"
    assert devnet.brief_genotype("mlp-64-32") == "mlp-64-32"
    assert devnet.brief_genotype("|weird~0|") == "|weird~0|"
    assert len(devnet.brief_genotype("x" * 100)) == 24


def test_connections_of_a_stopped_server_do_not_hold_its_port() -> None:
    """After a devnet stops, its ports' closed connections sit in TIME_WAIT for a minute; the
    next devnet binds those ports anyway (SO_REUSEADDR, as its servers do)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: TIME_WAIT on its port
    cli.close()
    srv.close()
    with socket.socket() as plain, pytest.raises(OSError):  # a probe without SO_REUSEADDR calls it taken
        plain.bind(("127.0.0.1", port))
    devnet.check_ports_free({"node0.p2p": port})


def test_blocks_won_under_the_pools_other_commit_keys_are_the_pools(tmp_path: Path) -> None:
    from consensus.crypto import derived_key, format_address
    from consensus.files import load_key_file

    topo = devnet.Topology(nodes=1, pool_members=1, solo=1, preset="regtest", pool_keys=3).check()
    manifest = devnet.init(tmp_path, topo, devnet.plan_ports(topo, 0), lead=5)
    pool_key = load_key_file(str(tmp_path / "keys" / "pool.key"))
    derived = [format_address(derived_key(pool_key, i).address) for i in (1, 2)]
    assert manifest["aliases"] == {a: "pool" for a in derived}
    view = devnet.RoundsView(manifest)
    assert [view.winner(a) for a in derived] == ["pool", "pool"]
    assert view.winner(manifest["accounts"]["pool"]) == "pool" and view.winner(manifest["accounts"]["solo0"]) == "solo0"
    assert view.winner("pn1unknownaddress") == "pn1unknownad…"


def test_the_summary_waits_for_a_node_still_connecting_the_last_block(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = {"processes": [{"name": f"node{i}", "role": "node", "api": f"http://n{i}"} for i in range(2)],
                "accounts": {}, "genesis": "00" * 32}
    polls = {"http://n1": 0}

    def fake(url: str, timeout: float = 0) -> object:
        if url.endswith("/status"):
            base = url.removesuffix("/api/v1/status")
            if base == "http://n1":
                polls[base] += 1
                return {"height": 4 if polls[base] < 3 else 5, "tip": "t"}  # connects block 5 late
            return {"height": 5, "tip": "t"}
        if "/blocks/" in url:
            return {"hash": "h" + url.rsplit("/", 1)[1]}
        return None

    monkeypatch.setattr(devnet, "http_json", fake)
    monkeypatch.setattr(devnet.time, "sleep", lambda s: None)
    view = devnet.RoundsView({"accounts": {}, "processes": [], "genesis_time": 0})
    summary = devnet.summarise(manifest, view, 0, 5, None, 1.0, 300)
    assert summary["agree"] == {"height": 5, "hashes": {"node0": "h5", "node1": "h5"}, "same": True}
    assert polls["http://n1"] == 3
    # a node that never catches up: the summary stops waiting and reports the height all hold
    polls["http://n1"] = -10**9
    monkeypatch.setattr(devnet, "AGREE_WAIT", 0.0)
    assert devnet.summarise(manifest, view, 0, 5, None, 1.0, 300)["agree"]["height"] == 4
