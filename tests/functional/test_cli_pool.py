"""``ponas pool serve`` and ``ponas pool join`` refuse bad input with a reason and exit 1 before
touching anything: a member must prove its payout address, fees are exact percentages, the
manager needs the node's token, commit keys are 1..64, the PPLNS window is units or rounds in range, the
minimum payout is an amount."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.crypto import format_address
from node.cli import main
from node.keyfile import save_key
from tests.builders import keys

K, OTHER = keys(2, seed=81)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_join_needs_the_key_of_the_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_key(K, str(tmp_path / "k.key"))
    addr = format_address(K.address)
    assert run(capsys, "pool", "join", "ws://127.0.0.1:9", "--address", addr) == (1, run_err("no-key"))
    code, err = run(capsys, "pool", "join", "ws://127.0.0.1:9", "--address", format_address(OTHER.address),
                    "--key", str(tmp_path / "k.key"))
    assert code == 1 and "error: wrong-key" in err
    code, err = run(capsys, "pool", "join", "ws://127.0.0.1:9", "--address", addr[:-1] + "x", "--key", str(tmp_path / "k.key"))
    assert code == 1 and "error: bad-" in err
    code, err = run(capsys, "pool", "join", "ws://127.0.0.1:9", "--address", addr, "--wallet", "none",
                    "--home", str(tmp_path / "h"), "--password-file", str(tmp_path / "k.key"))
    assert code == 1 and "error: no-wallet" in err
    code, err = run(capsys, "pool", "join", "ws://127.0.0.1:9", "--address", addr, "--key", str(tmp_path / "k.key"),
                    "--workers", "0")
    assert code == 1 and "error: bad-args" in err
    for bad in ("zz", "ab" * 31):  # not hex; 31 bytes
        code, err = run(capsys, "pool", "join", "ws://127.0.0.1:9", "--key", str(tmp_path / "k.key"), "--pool-key", bad)
        assert code == 1 and err.startswith("error: bad-pool-key:"), err


def run_err(reason: str) -> str:
    return f"error: {reason}: the pool pays ADDR only if you prove it: give --key FILE or --wallet NAME\n"


@pytest.mark.parametrize(("fee", "reason"), [("abc", "bad-args"), ("101", "bad-args"), ("0.00001", "bad-args"),
                                              ("-1", "bad-args")])
def test_serve_checks_fees_and_token(tmp_path: Path, capsys: pytest.CaptureFixture[str], fee: str, reason: str) -> None:
    (tmp_path / "cookie").write_text("t0ken\n")
    addr = format_address(K.address)
    code, err = run(capsys, "pool", "serve", "--node", "http://127.0.0.1:9", "--address", addr, "--datadir",
                    str(tmp_path / "p"), "--token-file", str(tmp_path / "cookie"), "--fee", fee)
    assert code == 1 and f"error: {reason}" in err
    assert not (tmp_path / "p").exists()
    code, err = run(capsys, "pool", "serve", "--node", "http://127.0.0.1:9", "--address", addr, "--datadir",
                    str(tmp_path / "p"), "--token-file", str(tmp_path / "nope"))
    assert code == 1 and "error: no-token-file" in err and err.count("\n") == 1


def test_without_address_or_key_there_is_nobody_to_pay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cookie").write_text("t0ken\n")
    code, err = run(capsys, "pool", "serve", "--node", "http://127.0.0.1:9", "--datadir", str(tmp_path / "p"),
                    "--token-file", str(tmp_path / "cookie"))
    assert code == 1 and err.startswith("error: no-address: give --address ADDR (the pool's fee address)")
    assert not (tmp_path / "p").exists()
    code, err = run(capsys, "mine", "--node", "http://127.0.0.1:9", "--token-file", str(tmp_path / "cookie"))
    assert code == 1 and err.startswith("error: no-address:")
    assert run(capsys, "pool", "join", "ws://127.0.0.1:9") == (1, run_err("no-key"))


@pytest.mark.parametrize("n", ["0", "65", "-3"])
def test_commit_keys_are_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str], n: str) -> None:
    (tmp_path / "cookie").write_text("t0ken\n")
    addr = format_address(K.address)
    code, err = run(capsys, "pool", "serve", "--node", "http://127.0.0.1:9", "--address", addr, "--datadir",
                    str(tmp_path / "p"), "--token-file", str(tmp_path / "cookie"), "--commit-keys", n)
    assert code == 1 and err.startswith("error: bad-commit-keys: --commit-keys must be 1 to 64")
    assert not (tmp_path / "p").exists()
    code, err = run(capsys, "mine", "--node", "http://127.0.0.1:9", "--address", addr, "--token-file",
                    str(tmp_path / "cookie"), "--commit-keys", n)
    assert code == 1 and err.startswith("error: bad-commit-keys:")


@pytest.mark.parametrize(("args", "said"), [
    (["--window", "0"], "window size must be a positive int"),
    (["--window-rounds", "0"], "window rounds must be an int in 1..1000"),
    (["--window-rounds", "1001"], "window rounds must be an int in 1..1000"),
    (["--window", "600", "--window-rounds", "3"], "give --window (units) or --window-rounds, not both"),
])
def test_the_pplns_window_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                     said: str) -> None:
    (tmp_path / "cookie").write_text("t0ken\n")
    code, err = run(capsys, "pool", "serve", "--node", "http://127.0.0.1:9", "--address", format_address(K.address),
                    "--datadir", str(tmp_path / "p"), "--token-file", str(tmp_path / "cookie"), *args)
    assert code == 1 and err.startswith(f"error: bad-window: {said}"), err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(("value", "reason"), [("0", "bad-amount"), ("-1", "bad-amount"), ("0.000000001", "too-precise")])
def test_the_minimum_payout_is_an_amount(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str,
                                         reason: str) -> None:
    (tmp_path / "cookie").write_text("t0ken\n")
    code, err = run(capsys, "pool", "serve", "--node", "http://127.0.0.1:9", "--address", format_address(K.address),
                    "--datadir", str(tmp_path / "p"), "--token-file", str(tmp_path / "cookie"), "--min-payout", value)
    assert code == 1 and err.startswith(f"error: {reason}:"), err
    assert not (tmp_path / "p").exists()
