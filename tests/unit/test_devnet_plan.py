"""The devnet's plan, without starting anything: every process it would start is a real
``ponas`` command line (parsed by the real parser into the right command), wired as the
topology says; ports, topology limits and the table's short genotypes. The typed manifest reads
a ``devnet.json`` written by the module before it was typed and writes it back byte for byte,
and refuses a malformed one with ``bad-manifest``."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from consensus.errors import ConsensusError
from node.cli import build_parser, cmd_node_run
from node.devnet import manifest as mf
from node.devnet import plan, watch
from node.devnet.errors import DevnetError
from node.devnet.manifest import Manifest, ProcessEntry, Topology
from pool.cli import cmd_mine, cmd_pool_join, cmd_pool_serve

COMMANDS = {"node": cmd_node_run, "pool": cmd_pool_serve, "member": cmd_pool_join, "solo": cmd_mine}


def parse(argv: Sequence[str]):  # type: ignore[no-untyped-def]
    prefix = plan.ponas_argv()
    assert list(argv[: len(prefix)]) == prefix
    return build_parser().parse_args(list(argv[len(prefix):]))


def accounts(topo: Topology) -> dict[str, str]:
    from consensus.crypto import PrivateKey, format_address

    names = ["pool", "pool-fee"] + [f"member{i}" for i in range(topo.pool_members)] + [f"solo{i}" for i in range(topo.solo)]
    return {n: format_address(PrivateKey.generate().address) for n in names}


def bare_manifest(**fields: Any) -> Manifest:
    """A manifest with placeholder values but for ``fields``."""
    base: dict[str, Any] = dict(dir="/x", created="2026-01-01T00:00:00Z", topology=Topology(), chain_id="ponas-regtest",
                                genesis="00" * 32, genesis_time=0, round_seconds=12, ports={}, accounts={},
                                wallet_node="http://n0", processes=())
    return Manifest(**(base | fields))


def test_every_process_is_a_real_ponas_command_wired_as_the_topology_says(tmp_path: Path) -> None:
    topo = Topology(nodes=3, pool_members=3, solo=2, preset="regtest").check()
    ports = plan.plan_ports(topo, 28400)
    accts = accounts(topo)
    procs = plan.plan_processes(tmp_path, topo, ports, accts)
    assert [p.name for p in procs] == ["node0", "node1", "node2", "pool", "member0", "member1", "member2", "solo0", "solo1"]
    parsed = {p.name: parse(p.argv) for p in procs}
    for p in procs:
        assert parsed[p.name].func is COMMANDS[p.role], p.name
        assert p.log == str(tmp_path / "logs" / f"{p.name}.log")
    # nodes: node0 closes with the beacon's key, node1 holds the backup closer's, every later
    # node peers with every earlier one
    assert parsed["node0"].closer_key == str(tmp_path / "beacon.key")
    assert parsed["node1"].closer_key == str(tmp_path / "beacon-backup.key") and parsed["node2"].closer_key is None
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
        assert m.check == "http://127.0.0.1:28401"  # each block the pool wins checked on the pool's node
        assert m.pool_key is None  # (no pool key file in this plan's directory: no pin)
    for i in range(2):
        s = parsed[f"solo{i}"]
        assert s.node == "http://127.0.0.1:28402" and s.token_file == str(tmp_path / "node2" / ".cookie")
        assert s.address == accts[f"solo{i}"]
    assert parsed["pool"].commit_keys == 1  # one key unless --pool-keys says otherwise
    keyed = Topology(nodes=2, pool_members=2, solo=1, pool_keys=4).check()
    pool = next(p for p in plan.plan_processes(tmp_path, keyed, plan.plan_ports(keyed, 28400), accounts(keyed))
                if p.name == "pool")
    assert parse(pool.argv).commit_keys == 4
    # miners yield the CPU to nodes
    assert {p.nice for p in procs if p.role in ("member", "solo")} == {plan.MINER_NICE}
    assert {p.nice for p in procs if p.role in ("node", "pool")} == {0}


def test_one_node_and_no_pool() -> None:
    topo = Topology(nodes=1, pool_members=0, solo=1).check()
    ports = plan.plan_ports(topo, 30000)
    assert ports == {"node0.api": 30000, "node0.p2p": 30100}
    procs = plan.plan_processes(Path("/x"), topo, ports, accounts(topo))
    assert [p.role for p in procs] == ["node", "solo"]
    assert parse(procs[1].argv).node == "http://127.0.0.1:30000"


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = plan.plan_ports(Topology(), 0)
    assert len(ports) == 7 and len(set(ports.values())) == 7
    plan.check_ports_free(ports)


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConsensusError) as exc:
            plan.check_ports_free({"node0.api": port})
    assert exc.value.reason == "port-in-use" and str(port) in exc.value.detail and "node0.api" in exc.value.detail


@pytest.mark.parametrize("kwargs", [
    {"nodes": 0}, {"nodes": mf.MAX_NODES + 1}, {"pool_members": -1}, {"solo": mf.MAX_SOLO + 1},
    {"pool_members": 0, "solo": 0}, {"preset": "mainnet"}, {"pool_keys": 0}, {"pool_keys": mf.MAX_POOL_KEYS + 1},
    {"task": "cifar"},
])
def test_topology_limits(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConsensusError) as exc:
        Topology(**kwargs).check()  # type: ignore[arg-type]
    assert exc.value.reason == "bad-args"


@pytest.mark.parametrize("base", [80, 65500, -1])
def test_base_port_range(base: int) -> None:
    with pytest.raises(ConsensusError) as exc:
        plan.plan_ports(Topology(), base)
    assert exc.value.reason == "bad-args"


def test_brief_genotype() -> None:
    g = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    assert watch.brief_genotype(g) == "3+s-+p13"
    assert watch.brief_genotype("mlp-64-32") == "mlp-64-32"
    assert watch.brief_genotype("|weird~0|") == "|weird~0|"
    assert len(watch.brief_genotype("x" * 100)) == 24


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
    plan.check_ports_free({"node0.p2p": port})


def test_blocks_won_under_the_pools_other_commit_keys_are_the_pools(tmp_path: Path) -> None:
    from consensus.crypto import derived_key, format_address
    from consensus.files import load_key_file

    topo = Topology(nodes=1, pool_members=1, solo=1, preset="regtest", pool_keys=3).check()
    manifest = plan.init(tmp_path, topo, plan.plan_ports(topo, 0), lead=5)
    pool_key = load_key_file(str(tmp_path / "keys" / "pool.key"))
    derived = [format_address(derived_key(pool_key, i).address) for i in (1, 2)]
    assert manifest.aliases == {a: "pool" for a in derived}
    view = watch.RoundsView(manifest)
    assert [view.winner(a) for a in derived] == ["pool", "pool"]
    assert view.winner(manifest.accounts["pool"]) == "pool" and view.winner(manifest.accounts["solo0"]) == "solo0"
    assert view.winner("pn1unknownaddress") == "pn1unknownad…"


def test_the_summary_waits_for_a_node_still_connecting_the_last_block(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = bare_manifest(processes=tuple(ProcessEntry(name=f"node{i}", role="node", argv=("ponas",), log="",
                                                          api=f"http://n{i}") for i in range(2)),
                             accounts={}, genesis="00" * 32)
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

    monkeypatch.setattr(watch, "http_json", fake)
    monkeypatch.setattr(watch.time, "sleep", lambda s: None)
    view = watch.RoundsView(bare_manifest(accounts={}, processes=(), genesis_time=0))
    summary = watch.summarise(manifest, view, 0, 5, None, 1.0, 300)
    assert summary["agree"] == {"height": 5, "hashes": {"node0": "h5", "node1": "h5"}, "same": True}
    assert polls["http://n1"] == 3
    # a node that never catches up: the summary stops waiting and reports the height all hold
    polls["http://n1"] = -10**9
    monkeypatch.setattr(watch, "AGREE_WAIT", 0.0)
    assert watch.summarise(manifest, view, 0, 5, None, 1.0, 300)["agree"]["height"] == 4


#: ``devnet.json`` of a stopped devnet (one node, a pool with one member and two keys, a solo
#: miner) as ``node/devnet.py`` wrote it before the manifest was typed (paths made portable).
OLD_MANIFEST: dict[str, Any] = json.loads("""\
{"format": 1, "dir": "/home/dev/dn", "created": "2026-12-03T13:38:21Z", "state": "stopped", "supervisor": null,
 "topology": {"nodes": 1, "pool_members": 1, "solo": 1, "preset": "regtest", "pool_keys": 2},
 "chain_id": "ponas-regtest", "genesis": "0560f3027f7b496a91d9ae106d4f0b98fc5e18c4fc0b3d494aedee5d0820bcdd",
 "genesis_time": 1796305103, "round_seconds": 12,
 "ports": {"node0.api": 28400, "node0.p2p": 28500, "pool": 28600},
 "accounts": {"pool": "pn1q0j2nm6qt4tpp8d2hpzs8cge7acad8qnazua6t", "pool-fee": "pn1nrwsedwnn0hz242m20xca888udsmjh6ep83lnp",
              "member0": "pn1d4fp3tl00suv4336j8hnyskkgcgsyegrn80sn6", "solo0": "pn1yzc52dgphz2mkkrejehkwexq5cjw6gx6v48n7s",
              "alice": "pn1ysgsmm2jc8hh8y7zwrfk0wa3tyuvm8qmeewskj", "bob": "pn1q3fk6r05dkd9475jvtrlj4srp76vnrrx303wk0"},
 "aliases": {"pn1r2s4vwtw4s4zp82ynyvw9sty7ja3zte8pevlca": "pool"}, "wallet_node": "http://127.0.0.1:28400",
 "processes": [
  {"name": "node0", "role": "node",
   "argv": ["/opt/ponas/bin/ponas", "-v", "node", "run", "--datadir", "/home/dev/dn/node0", "--genesis",
            "/home/dev/dn/genesis.json", "--api-port", "28400", "--p2p-port", "28500", "--closer-key",
            "/home/dev/dn/beacon.key"],
   "log": "/home/dev/dn/logs/node0.log", "nice": 0, "api": "http://127.0.0.1:28400", "pid": 4242},
  {"name": "pool", "role": "pool",
   "argv": ["/opt/ponas/bin/ponas", "-v", "pool", "serve", "--node", "http://127.0.0.1:28400", "--address",
            "pn1nrwsedwnn0hz242m20xca888udsmjh6ep83lnp", "--key", "/home/dev/dn/keys/pool.key", "--datadir",
            "/home/dev/dn/pool", "--port", "28600", "--token-file", "/home/dev/dn/node0/.cookie",
            "--commit-keys", "2"],
   "log": "/home/dev/dn/logs/pool.log", "nice": 0, "api": "http://127.0.0.1:28600", "pid": 4243},
  {"name": "member0", "role": "member",
   "argv": ["/opt/ponas/bin/ponas", "-v", "pool", "join", "ws://127.0.0.1:28600/ws", "--address",
            "pn1d4fp3tl00suv4336j8hnyskkgcgsyegrn80sn6", "--key", "/home/dev/dn/keys/member0.key",
            "--worker", "member0"],
   "log": "/home/dev/dn/logs/member0.log", "nice": 10, "api": null, "pid": 4244},
  {"name": "solo0", "role": "solo",
   "argv": ["/opt/ponas/bin/ponas", "-v", "mine", "--node", "http://127.0.0.1:28400", "--address",
            "pn1yzc52dgphz2mkkrejehkwexq5cjw6gx6v48n7s", "--key", "/home/dev/dn/keys/solo0.key",
            "--token-file", "/home/dev/dn/node0/.cookie", "-q"],
   "log": "/home/dev/dn/logs/solo0.log", "nice": 10, "api": null, "pid": 4245}
 ]}
""")


def test_a_manifest_written_before_it_was_typed_loads_and_saves_back_byte_for_byte(tmp_path: Path) -> None:
    text = json.dumps(OLD_MANIFEST, indent=2) + "\n"  # how the old module wrote it (write_json_atomic)
    (tmp_path / mf.MANIFEST).write_text(text)
    manifest = mf.load(tmp_path)
    assert manifest.state == "stopped" and manifest.topology == Topology(nodes=1, pool_members=1, solo=1,
                                                                         preset="regtest", pool_keys=2, task="digits")
    assert [(p.name, p.role, p.pid) for p in manifest.processes] == [
        ("node0", "node", 4242), ("pool", "pool", 4243), ("member0", "member", 4244), ("solo0", "solo", 4245)]
    assert manifest.node_apis() == [("node0", "http://127.0.0.1:28400")]
    assert manifest.ports["pool"] == 28600 and manifest.accounts["alice"] == OLD_MANIFEST["accounts"]["alice"]
    out = tmp_path / "out"
    out.mkdir()
    mf.save(out, manifest)
    # written back as it was, with the task it had (before tasks, every chain was digits)
    with_task = copy.deepcopy(OLD_MANIFEST)
    with_task["topology"]["task"] = "digits"
    assert (out / mf.MANIFEST).read_text() == json.dumps(with_task, indent=2) + "\n"
    assert Manifest.from_json(manifest.to_json()) == manifest
    # the oldest manifests have neither the pool's key count nor aliases: one key, no aliases
    older = copy.deepcopy(OLD_MANIFEST)
    del older["topology"]["pool_keys"], older["aliases"]
    loaded = Manifest.from_json(older)
    assert loaded.topology.pool_keys == 1 and loaded.aliases == {}
    assert loaded.to_json() == older | {"topology": older["topology"] | {"pool_keys": 1, "task": "digits"}, "aliases": {}}


def test_what_init_writes_loads_as_it_was_returned(tmp_path: Path) -> None:
    topo = Topology(nodes=2, pool_members=1, solo=1, preset="regtest").check()
    manifest = plan.init(tmp_path, topo, plan.plan_ports(topo, 0), lead=5)
    assert mf.load(tmp_path) == manifest and manifest.state == "initialised" and manifest.supervisor is None
    assert all(p.pid is None for p in manifest.processes)
    running = manifest.with_state("running", supervisor=77).with_pid("node1", 1234)
    assert running.process("node1").pid == 1234 and running.process("node0").pid is None and running.supervisor == 77
    assert manifest.state == "initialised" and manifest.process("node1").pid is None  # frozen: a new manifest


def _without(key: str) -> dict[str, Any]:
    m = copy.deepcopy(OLD_MANIFEST)
    del m[key]
    return m


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    m = copy.deepcopy(OLD_MANIFEST)
    target = m
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return m


@pytest.mark.parametrize("data,said", [
    ([OLD_MANIFEST], "is not a devnet manifest of format 1"),
    (_with(("format",), 2), "is not a devnet manifest of format 1"),
    (_with(("processes",), {}), "is not a devnet manifest of format 1"),
    (_without("chain_id"), "manifest lacks chain_id"),
    (_with(("surprise",), 1), "manifest has unknown keys surprise"),
    (_with(("state",), "asleep"), "state is not one of"),
    (_with(("supervisor",), "123"), "manifest.supervisor is not an integer"),
    (_with(("genesis_time",), True), "manifest.genesis_time is not an integer"),
    (_with(("topology", "nodes"), "3"), "topology.nodes is not an integer"),
    (_with(("topology",), None), "topology is not an object"),
    (_with(("ports", "pool"), "28600"), "ports.pool is not an integer"),
    (_with(("accounts", "bob"), 7), "accounts.bob is not a string"),
    (_with(("processes", 1, "pid"), "4243"), "processes[1].pid is not an integer"),
    (_with(("processes", 2, "role"), "miner"), "processes[2].role is not one of"),
    (_with(("processes", 0, "argv"), []), "processes[0].argv is not a non-empty list of strings"),
    (_with(("processes", 3, "name"), "node0"), "two processes have the same name"),
])
def test_a_malformed_manifest_is_refused_with_its_reason(tmp_path: Path, data: object, said: str) -> None:
    (tmp_path / mf.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(DevnetError) as exc:
        mf.load(tmp_path)
    assert exc.value.reason == "bad-manifest" and said in exc.value.detail, exc.value.detail
    assert str(tmp_path / mf.MANIFEST) in exc.value.detail
    assert isinstance(exc.value, ConsensusError)  # what `ponas` prints as "error: bad-manifest: ..."


def test_no_manifest_and_one_that_is_no_json(tmp_path: Path) -> None:
    with pytest.raises(DevnetError) as exc:
        mf.load(tmp_path)
    assert exc.value.reason == "no-devnet"
    (tmp_path / mf.MANIFEST).write_text("{not json")
    with pytest.raises(DevnetError) as exc:
        mf.load(tmp_path)
    assert exc.value.reason == "bad-manifest"


def test_a_block_row_shows_the_task_epoch_and_the_score_out_of_the_rounds_test_set() -> None:
    view = watch.RoundsView(bare_manifest(accounts={}, processes=(), genesis_time=0))
    mnist = view.add({"height": 21, "miner": None, "payouts": [], "task_epoch": 1, "test_set_size": 5000,
                      "header": {"genotype": "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|",
                                 "score": 4731, "timestamp": 60}})
    assert view.cells(mnist, 0)[:5] == ["21", "1", "?", "3+-s+--p", "4731/5000 94.6%"]
    digits = view.add({"height": 2, "miner": None, "payouts": [], "header": {"genotype": "", "score": 290}})
    assert view.cells(digits, 300)[1] == "-" and view.cells(digits, 300)[4] == "290/300 96.7%"  # an older node's API


@pytest.mark.parametrize("task", ["mnist1d", "digits"])
def test_the_devnet_chain_has_the_task_asked_for(tmp_path: Path, task: str) -> None:
    from consensus.params import DEFAULT_TASK, load_params

    assert Topology().task == DEFAULT_TASK == "mnist1d"
    topo = Topology(nodes=1, pool_members=1, solo=0, preset="regtest", task=task).check()
    manifest = plan.init(tmp_path, topo, plan.plan_ports(topo, 0), lead=5)
    assert load_params(str(tmp_path / "genesis.json")).ponas.task == task
    assert manifest.topology.task == task and mf.load(tmp_path).topology.task == task


def test_members_pin_the_pool_key_that_init_wrote(tmp_path: Path) -> None:
    """With the pool's key file in the devnet directory (``init`` writes it before planning), each
    member is started with the pool's public key (``--pool-key``): a relayed challenge is refused."""
    from consensus.crypto import PrivateKey
    from node.keyfile import save_key

    (tmp_path / "keys").mkdir()
    pool = PrivateKey.generate()
    save_key(pool, str(tmp_path / "keys" / "pool.key"))
    topo = Topology(nodes=2, pool_members=2, solo=0, preset="regtest").check()
    procs = plan.plan_processes(tmp_path, topo, plan.plan_ports(topo, 28400), accounts(topo))
    pins = {p.name: parse(p.argv).pool_key for p in procs if p.role == "member"}
    assert pins == {"member0": pool.public_key.hex(), "member1": pool.public_key.hex()}
