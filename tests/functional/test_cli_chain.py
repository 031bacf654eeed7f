"""The ``ponas`` command line for the chain core: a genesis file from a preset, pow blocks
mined into a LevelDB datadir, the chain printed; and bad input (addresses, amounts, genesis
files, datadirs) answered with a reason and a non-zero exit, nothing overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus.params import ChainParams, load_params
from node.cli import main
from tests.framework.procs import ponas_argv, run_ponas


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def net(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    g = str(tmp_path / "genesis.json")
    code, out, _ = run(capsys, "genesis", "new", "--preset", "regtest", "--engine", "pow", "--out", g, "--demo-keys", str(tmp_path / "keys"))
    assert code == 0, out
    a0 = json.loads((tmp_path / "keys" / "demo0.key").read_text())["address"]
    a1 = json.loads((tmp_path / "keys" / "demo1.key").read_text())["address"]
    return {"genesis": g, "datadir": str(tmp_path / "node"), "a0": a0, "a1": a1, "k0": str(tmp_path / "keys" / "demo0.key")}


def test_genesis_generate_show(net: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "chain", "generate", "--datadir", net["datadir"], "--genesis", net["genesis"], "--blocks", "3",
        "--address", net["a1"], "--send-from", net["k0"], "--send-to", net["a1"], "--amount", "2.5",
    )
    assert code == 0, err
    assert out.count("mined block") == 3
    code, out, err = run(capsys, "chain", "show", "--datadir", net["datadir"], "--genesis", net["genesis"], "--json", "--accounts")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["height"] == 3 and len(shown["blocks"]) == 4
    assert shown["accounts"][net["a0"]] == {"balance": "997.4999", "nonce": 1}
    assert shown["accounts"][net["a1"]]["balance"] == "1152.5001"


def test_genesis_file_round_trips(net: dict[str, str]) -> None:
    params = load_params(net["genesis"])
    assert isinstance(params, ChainParams) and params.engine == "pow" and len(params.prefunds) == 2
    assert ChainParams.from_json(json.loads(json.dumps(params.to_json()))) == params


@pytest.mark.parametrize(
    ("argv_tail", "reason"),
    [
        (["--address", "pn1notanaddress"], "bad-address"),
        (["--address", "A1", "--send-from", "K0", "--send-to", "A1", "--amount", "-1"], "bad-amount"),
        (["--address", "A1", "--send-from", "K0", "--send-to", "A1", "--amount", "0.000000001"], "too-precise"),
        (["--address", "A1", "--send-from", "K0", "--send-to", "A1", "--amount", "5000"], "insufficient-funds"),
        (["--address", "A1", "--blocks", "0"], "bad-count"),
    ],
)
def test_generate_bad_input(net: dict[str, str], capsys: pytest.CaptureFixture[str], argv_tail: list[str], reason: str) -> None:
    tail = [net["a1"] if a == "A1" else net["k0"] if a == "K0" else a for a in argv_tail]
    code, _, err = run(capsys, "chain", "generate", "--datadir", net["datadir"], "--genesis", net["genesis"], *tail)
    assert code != 0
    assert f"error: {reason}" in err


def test_mistyped_address_is_a_checksum_error(net: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    a = net["a1"]
    typo = a[:10] + ("q" if a[10] != "q" else "p") + a[11:]
    code, _, err = run(capsys, "chain", "generate", "--datadir", net["datadir"], "--genesis", net["genesis"], "--address", typo)
    assert code == 1 and "error: bad-checksum" in err


@pytest.mark.parametrize(
    ("content", "reason"),
    [("not json", "bad-genesis"), ("[]", "bad-genesis"), ('{"format": 1}', "bad-genesis"), ('{"format": 7}', "bad-genesis")],
)
def test_bad_genesis_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, reason: str) -> None:
    g = tmp_path / "g.json"
    g.write_text(content)
    code, _, err = run(capsys, "chain", "show", "--datadir", str(tmp_path / "d"), "--genesis", str(g))
    assert code == 1 and f"error: {reason}" in err
    assert not (tmp_path / "d").exists()


def test_genesis_with_bad_field_types(net: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(Path(net["genesis"]).read_text())
    data["initial_subsidy"] = 1.5
    g = tmp_path / "float.json"
    g.write_text(json.dumps(data))
    code, _, err = run(capsys, "chain", "show", "--datadir", str(tmp_path / "d"), "--genesis", str(g))
    assert code == 1 and "error: bad-genesis" in err


def test_genesis_new_refuses_to_overwrite(net: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    before = Path(net["genesis"]).read_bytes()
    code, _, err = run(capsys, "genesis", "new", "--out", net["genesis"])
    assert code == 1 and "error: file-exists" in err
    assert Path(net["genesis"]).read_bytes() == before


def test_console_script_runs(tmp_path: Path) -> None:
    assert ponas_argv()[0].endswith("ponas"), "the console script is installed beside this python"
    proc = run_ponas("genesis", "new", "--out", str(tmp_path / "g.json"))
    assert proc.returncode == 0, proc.stderr
    assert "engine ponas" in proc.stdout
    proc = run_ponas("chain")
    assert proc.returncode == 2 and "ACTION" in proc.stderr


def test_ponas_rounds_mined_locally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Digits, in this process (the default task, mnist1d, pins the kernels: its own test runs
    the command in a child)."""
    g = str(tmp_path / "g.json")
    assert run(capsys, "genesis", "new", "--task", "digits", "--out", g, "--demo-keys", str(tmp_path / "keys"))[0] == 0
    a = [json.loads((tmp_path / "keys" / f"demo{i}.key").read_text())["address"] for i in range(2)]
    d = str(tmp_path / "node")
    base = ["chain", "generate", "--datadir", d, "--genesis", g]
    code, _, err = run(capsys, *base, "--address", a[0])
    assert code == 1 and "error: bad-args" in err  # no beacon key
    other = tmp_path / "other"
    other.mkdir()
    assert run(capsys, "genesis", "new", "--out", str(other / "g.json"))[0] == 0
    code, _, err = run(capsys, *base, "--address", a[0], "--beacon-key", str(other / "beacon.key"))
    assert code == 1 and "error: wrong-beacon" in err
    code, out, err = run(
        capsys, *base, "--address", a[0], "--address", a[1], "--beacon-key", str(tmp_path / "beacon.key"),
        "--trainings", "1", "--seed", "7", "--blocks", "2",
    )
    assert code == 0, err
    assert "round 1:" in out and "round 2:" in out and out.count("winner") == 2
    code, out, _ = run(capsys, "chain", "show", "--datadir", d, "--genesis", g, "--json")
    shown = json.loads(out)
    assert shown["height"] == 2
    for block in shown["blocks"][1:]:
        assert block["genotype"].startswith("|") and 0 < block["score"] <= 200
        assert block["payouts"][0][0] in a


def test_mnist1d_rounds_mined_locally_show_their_task_epoch(tmp_path: Path) -> None:
    """The default task in a child process: regtest epochs are 4 rounds, so 5 rounds cross into
    task epoch 1; every score is out of the round's 200 fresh test samples."""
    g = str(tmp_path / "g.json")
    made = run_ponas("genesis", "new", "--preset", "regtest", "--out", g, "--demo-keys", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    assert load_params(g).ponas.task == "mnist1d"
    a = [json.loads((tmp_path / "keys" / f"demo{i}.key").read_text())["address"] for i in range(2)]
    d = str(tmp_path / "node")
    mined = run_ponas("chain", "generate", "--datadir", d, "--genesis", g, "--address", a[0], "--address", a[1],
                      "--beacon-key", str(tmp_path / "beacon.key"), "--trainings", "1", "--seed", "7", "--blocks", "5",
                      timeout=300)
    assert mined.returncode == 0, mined.stderr
    assert mined.stdout.count("(score of 200 test samples, task epoch 0)") == 4
    assert mined.stdout.count("(score of 200 test samples, task epoch 1)") == 1
    shown = run_ponas("chain", "show", "--datadir", d, "--genesis", g, "--json")
    blocks = json.loads(shown.stdout)["blocks"]
    assert len(blocks) == 6 and all(0 < b["score"] <= 200 for b in blocks[1:])
