"""The ``ponas wallet`` console script as a person runs it (a real process): the password from
the environment, the recovery words shown once, a readable table, the config file picking
the node, and errors on stderr with exit 1."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

from tests.framework.procs import child_env, run_ponas


def ponas(home: Path, *argv: str, password: str | None = "hunter22", stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in child_env().items() if not k.startswith("PONAS_")}
    env["PONAS_HOME"] = str(home)
    if password is not None:
        env["PONAS_WALLET_PASSWORD"] = password
    return run_ponas("wallet", *argv, env=env, stdin=stdin, cwd=Path.cwd())


def test_create_shows_words_once_and_import_restores(tmp_path: Path) -> None:
    made = ponas(tmp_path / "a", "create", "-w", "savings")
    assert made.returncode == 0, made.stderr
    words = re.findall(r"\d+\. ([a-z]+)", made.stdout)
    assert len(words) == 24
    address = re.search(r"address: (pn1\w+)", made.stdout).group(1)  # type: ignore[union-attr]
    wallet = tmp_path / "a" / "wallets" / "savings.wallet"
    assert stat.S_IMODE(wallet.stat().st_mode) == 0o600
    # the words in the order shown by the grid (column-major)
    grid = [re.findall(r"(\d+)\. ([a-z]+)", line) for line in made.stdout.splitlines()]
    ordered = [w for _, w in sorted((int(n), w) for row in grid for n, w in row)]
    # the file holds them sealed only: its fields are the sealed format's, and neither the phrase
    # (nor its hex) nor any two of its words in a row are in it. (Single words are no test:
    # "address", "dress", "version" and "wallet" are BIP-39 words and the format's own.)
    text = wallet.read_text()
    assert set(json.loads(text)) == {"format", "version", "name", "created", "path", "addresses", "kdf", "cipher",
                                     "ciphertext"}
    assert " ".join(ordered).encode().hex() not in text
    assert not any(f"{a} {b}" in text or f"{a}{b}" in text for a, b in zip(ordered, ordered[1:]))
    listed = ponas(tmp_path / "a", "list")
    assert listed.returncode == 0 and "savings" in listed.stdout and address in listed.stdout
    assert not re.search(r"\d+\. [a-z]+", listed.stdout)  # the words are shown once: never again

    # the words in that order restore the same address
    restored = ponas(tmp_path / "b", "import", "--mnemonic-file", "-", stdin=" ".join(ordered) + "\n")
    assert restored.returncode == 0, restored.stderr
    assert address in restored.stdout

    # no password source and no terminal: a clear error, nothing written
    nopw = ponas(tmp_path / "c", "create", password=None)
    assert nopw.returncode == 1 and "error: no-password" in nopw.stderr
    assert not (tmp_path / "c" / "wallets").exists()


def test_errors_are_reasons_with_exit_1(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert ponas(home, "create", "--words", "12").returncode == 0
    down = ponas(home, "balance")
    assert down.returncode == 1 and "error: no-node" in down.stderr
    (home / "config.toml").write_text('[wallet]\nnode = "http://127.0.0.1:9"\n')
    down = ponas(home, "balance")
    assert down.returncode == 1 and "error: unreachable" in down.stderr and "127.0.0.1:9" in down.stderr
    (home / "config.toml").write_text("[wallet\n")
    assert "error: bad-config" in ponas(home, "balance").stderr
    (home / "config.toml").unlink()
    wrong = ponas(home, "address", "--new", password="nope")
    assert wrong.returncode == 1 and "error: bad-password" in wrong.stderr
    typo = ponas(home, "send", "pn1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "1")
    assert typo.returncode == 1 and "error: bad-checksum" in typo.stderr
    usage = ponas(home, "send")
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_more_bad_arguments(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert ponas(home, "create", "--words", "12").returncode == 0
    (home / "config.toml").write_text('[wallet]\nnode = "http://127.0.0.1:9"\n')
    for argv, reason in [
        (("history", "--limit", "0"), "bad-args"),
        (("tx", "zz"), "bad-args"),
        (("send", "pn1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "1", "--offline"), "bad-checksum"),
        (("import", "-w", "other", "--accounts", "0", "--mnemonic-file", "-"), "bad-path"),
        (("create", "-w", "../x"), "bad-name"),
    ]:
        got = ponas(home, *argv, stdin="")
        assert got.returncode == 1 and f"error: {reason}" in got.stderr, (argv, got.stderr)
    wallet = tmp_path / "h" / "wallets" / "default.wallet"
    address = re.search(r"pn1\w+", ponas(home, "address").stdout).group(0)  # type: ignore[union-attr]
    offline = ponas(home, "send", address, "1", "--offline", "--fee", "0.001")
    assert offline.returncode == 1 and "error: bad-args" in offline.stderr and "--chain-id" in offline.stderr
    assert not (tmp_path / "h" / "wallets" / "default.outbox.json").exists() and wallet.exists()
