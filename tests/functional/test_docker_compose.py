"""docker/: the compose file is valid for Debian's ``docker-compose`` and has the devnet's topology,
and every container runs a real ``ponas`` command line.

No Docker engine runs on these machines, so nothing is started: ``docker-compose config``
validates and resolves the file (anchors, defaults), and each service's command is parsed by
the real ``ponas`` parser into the command it names. ``.ci/run`` installs ``docker-compose``;
without it this test skips locally and fails under CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from node.cli import build_parser, cmd_node_run
from node.devnet.cli import cmd_init
from pool.cli import cmd_mine, cmd_pool_join, cmd_pool_serve

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs Debian's docker-compose")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    r = subprocess.run([exe, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load(r.stdout)
    assert isinstance(data, dict)
    return data


def parse(command: list[str]):  # type: ignore[no-untyped-def]
    try:
        return build_parser().parse_args(command)
    except SystemExit as exc:  # argparse refused it
        raise AssertionError(f"not a ponas command line: {command}") from exc


def test_every_service_runs_a_real_ponas_subcommand(config: dict[str, Any]) -> None:
    expected = {"init": cmd_init, "node0": cmd_node_run, "node1": cmd_node_run, "node2": cmd_node_run,
                "pool": cmd_pool_serve, "member0": cmd_pool_join, "member1": cmd_pool_join, "member2": cmd_pool_join,
                "solo0": cmd_mine}
    services = config["services"]
    assert set(services) == set(expected)
    for name, service in services.items():
        assert service["image"] == "ponas-chain:dev" and service["build"]["dockerfile"] == "docker/Dockerfile"
        command = service["command"]
        assert isinstance(command, list), f"{name}: command is an argv list"
        assert parse(command).func is expected[name], name


def test_the_topology_wiring_health_and_volumes(config: dict[str, Any]) -> None:
    s = config["services"]
    args = {name: parse(svc["command"]) for name, svc in s.items()}
    # init writes the devnet once
    assert args["init"].if_missing and args["init"].dir == "/devnet" and args["init"].preset == "devnet"
    assert (args["init"].nodes, args["init"].pool_members, args["init"].solo) == (3, 3, 1)
    # node0 holds the beacon's key and node1 the backup closer's, on a volume no other
    # container mounts (both know every future test key: no miner may hold them); the others
    # peer with node0
    assert args["init"].beacon_key == "/beacon/beacon.key" and args["node0"].closer_key == "/beacon/beacon.key"
    assert args["node1"].closer_key == "/beacon/beacon-backup.key"

    def mounts(name: str) -> set[str]:
        return {v.split(":")[0] if isinstance(v, str) else str(v.get("source")) for v in s[name].get("volumes", [])}

    assert {name for name in s if "beacon" in mounts(name)} == {"init", "node0", "node1"}
    assert "beacon" in config["volumes"]
    assert args["node2"].closer_key is None
    assert "node0:9333" in args["node1"].peer and "node0:9333" in args["node2"].peer
    for i, name in enumerate(("node0", "node1", "node2")):
        assert args[name].api_host == "0.0.0.0" and args[name].genesis == "/devnet/genesis.json"
        published = {(int(p["published"]), int(p["target"])) if isinstance(p, dict) else tuple(map(int, str(p).split(":")))
                     for p in s[name]["ports"]}
        assert published == {(28400 + i, args[name].api_port)}
        assert "healthcheck" in s[name] and "8545/api/v1/status" in " ".join(s[name]["healthcheck"]["test"])
    assert s["node0"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    # the pool commits through node1 with node1's cookie; members join it; the solo miner uses node2
    assert args["pool"].node == "http://node1:8545" and args["pool"].token_file == "/node1/.cookie"
    assert any(v.startswith("node1:/node1") for v in s["pool"]["volumes"]) or \
        any(isinstance(v, dict) and v.get("source") == "node1" for v in s["pool"]["volumes"])
    assert "healthcheck" in s["pool"]
    for i in range(3):
        m = args[f"member{i}"]
        assert m.url == "ws://pool:3333/ws" and m.key == f"/devnet/keys/member{i}.key"
        assert s[f"member{i}"]["depends_on"]["pool"]["condition"] == "service_healthy"
    assert args["solo0"].node == "http://node2:8545" and args["solo0"].key == "/devnet/keys/solo0.key"
    assert s["node1"]["depends_on"]["node0"]["condition"] == "service_healthy"
    # named volumes for every datadir
    assert {"devnet", "node0", "node1", "node2", "pool"} <= set(config["volumes"])


def test_the_dockerfile_pins_the_cpu_torch_on_python_311_slim() -> None:
    text = DOCKERFILE.read_text()
    assert text.splitlines()[[i for i, line in enumerate(text.splitlines()) if line.startswith("FROM")][0]] \
        == "FROM python:3.11-slim"
    assert "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text
    assert 'ENTRYPOINT ["ponas"]' in text
