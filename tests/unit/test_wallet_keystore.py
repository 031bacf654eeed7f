"""Wallet keys and keystore without a node: SLIP-10 and BIP-39 against their published vectors,
a mnemonic restores the same addresses, and a wrong password, a truncated, altered or
hostile file, or an existing name give their reason and change nothing on disk."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from consensus.crypto import format_address
from wallet.errors import WalletError
from wallet.keys import derive_key, derive_path, new_mnemonic, normalise_mnemonic, seed_from_mnemonic, slip10_master
from wallet.keystore import Keystore, Outbox, check_name, list_wallets, wallet_path

H = 0x8000_0000
FAST = {"n": 1 << 10, "r": 8, "p": 1}  # cheap scrypt for tests; the default is checked once below
PHRASE = "legal winner thank year wave sausage worth useful legal winner thank yellow"


def test_slip10_ed25519_vector_1() -> None:
    seed = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    key, chain_code = slip10_master(seed)
    assert key.hex() == "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7"
    assert chain_code.hex() == "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb"
    key, chain_code = derive_path(seed, [0 | H])
    assert key.hex() == "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3"
    assert chain_code.hex() == "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69"
    key, _ = derive_path(seed, [0 | H, 1 | H, 2 | H])
    assert key.hex() == "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9"
    with pytest.raises(WalletError) as err:
        derive_path(seed, [1])  # Ed25519 has no public derivation
    assert err.value.reason == "bad-path"


def test_bip39_vector_and_checks() -> None:
    # trezor/python-mnemonic vectors.json, entropy 7f7f..., passphrase "TREZOR"
    assert seed_from_mnemonic(PHRASE, "TREZOR").hex() == (
        "2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6f"
        "a457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607")
    assert normalise_mnemonic("  Legal  WINNER thank year wave sausage worth useful legal winner thank yellow\n") == PHRASE
    for bad, why in [
        (PHRASE.replace("yellow", "year"), "checksum"),
        (PHRASE.replace("legal", "legalx", 1), "word list"),
        (" ".join(PHRASE.split()[:11]), "11 words"),
        ("", "0 words"),
    ]:
        with pytest.raises(WalletError) as err:
            normalise_mnemonic(bad)
        assert err.value.reason == "bad-mnemonic" and why in err.value.detail
    assert len(new_mnemonic(12).split()) == 12 and len(new_mnemonic().split()) == 24
    assert new_mnemonic() != new_mnemonic()


def test_create_unlock_and_import_restore_the_same_addresses(tmp_path: Path) -> None:
    phrase = new_mnemonic()
    store = Keystore.create(str(tmp_path / "a"), "alice", phrase, "pw", accounts=2, kdf=FAST)
    assert store.addresses == [derive_key(seed_from_mnemonic(phrase), i).address for i in range(2)]
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert phrase not in Path(store.path).read_text()
    unlocked = Keystore.load(str(tmp_path / "a"), "alice").unlock("pw")
    assert unlocked.mnemonic == phrase and [k.address for k in unlocked.keys] == store.addresses
    restored = Keystore.create(str(tmp_path / "fresh-home"), "restored", phrase, "other", accounts=2, kdf=FAST)
    assert restored.addresses == store.addresses
    # the next address is derived and recorded; the file stays unlockable
    third = Keystore.load(str(tmp_path / "a"), "alice").add_address("pw")
    assert third == derive_key(seed_from_mnemonic(phrase), 2).address
    assert Keystore.load(str(tmp_path / "a"), "alice").addresses[2] == third
    assert list_wallets(str(tmp_path / "a")) == ["alice"]


def test_default_kdf_is_scrypt_32_mib(tmp_path: Path) -> None:
    store = Keystore.create(str(tmp_path), "w", new_mnemonic(12), "pw")
    data = json.loads(Path(store.path).read_text())
    assert data["kdf"]["name"] == "scrypt" and data["kdf"]["n"] == 1 << 15 and data["kdf"]["r"] == 8
    assert data["cipher"]["name"] == "aes-256-gcm"


def _store(tmp_path: Path) -> Keystore:
    return Keystore.create(str(tmp_path), "w", PHRASE, "right", kdf=FAST)


def test_wrong_password(tmp_path: Path) -> None:
    store = _store(tmp_path)
    before = Path(store.path).read_bytes()
    with pytest.raises(WalletError) as err:
        Keystore.load(str(tmp_path), "w").unlock("wrong")
    assert err.value.reason == "bad-password"
    with pytest.raises(WalletError):
        Keystore.load(str(tmp_path), "w").add_address("wrong")
    assert Path(store.path).read_bytes() == before


def _alter(data: dict, how: str) -> bytes:  # type: ignore[type-arg]
    if how == "address":
        data["addresses"] = [format_address(derive_key(b"\x01" * 64, 0).address)]
    elif how == "ciphertext":
        data["ciphertext"] = ("00" if data["ciphertext"][:2] != "00" else "11") + data["ciphertext"][2:]
    elif how == "huge-scrypt":
        data["kdf"]["n"] = 1 << 30
    elif how == "no-nonce":
        del data["cipher"]["nonce"]
    elif how == "version":
        data["version"] = 9
    return json.dumps(data).encode()


@pytest.mark.parametrize(("how", "reason"), [
    ("truncated", "bad-keystore"),
    ("empty", "bad-keystore"),
    ("not-json", "bad-keystore"),
    ("address", "bad-password"),  # the public part is authenticated
    ("ciphertext", "bad-password"),
    ("huge-scrypt", "bad-keystore"),  # a hostile file cannot make us allocate gigabytes
    ("no-nonce", "bad-keystore"),
    ("version", "bad-keystore"),
])
def test_damaged_keystore(tmp_path: Path, how: str, reason: str) -> None:
    store = _store(tmp_path)
    raw = Path(store.path).read_bytes()
    raw_cases = {"truncated": raw[: len(raw) // 2], "empty": b"", "not-json": b"\xff\xfe"}
    bad = raw_cases[how] if how in raw_cases else _alter(json.loads(raw), how)
    Path(store.path).write_bytes(bad)
    with pytest.raises(WalletError) as err:
        Keystore.load(str(tmp_path), "w").unlock("right")
    assert err.value.reason == reason
    assert Path(store.path).read_bytes() == bad  # nothing rewrote it


def test_existing_wallet_is_never_overwritten(tmp_path: Path) -> None:
    store = _store(tmp_path)
    before = Path(store.path).read_bytes()
    with pytest.raises(WalletError) as err:
        Keystore.create(str(tmp_path), "w", new_mnemonic(), "x", kdf=FAST)
    assert err.value.reason == "wallet-exists" and Path(store.path).read_bytes() == before
    with pytest.raises(WalletError) as err:
        Keystore.create(str(tmp_path), "v", PHRASE, "", kdf=FAST)
    assert err.value.reason == "weak-password" and not os.path.exists(wallet_path(str(tmp_path), "v"))
    with pytest.raises(WalletError) as err:
        Keystore.load(str(tmp_path), "nobody")
    assert err.value.reason == "no-wallet"


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "x" * 65, "w.outbox"])
def test_bad_wallet_names(name: str) -> None:
    with pytest.raises(WalletError) as err:
        check_name(name)
    assert err.value.reason == "bad-name"


def test_outbox_survives_and_rejects_damage(tmp_path: Path) -> None:
    from tests.builders import keys, make_params, transfer

    k = keys(2, seed=5)
    params = make_params(k[:1])
    store = _store(tmp_path)
    box = Outbox.for_wallet(store)
    tx = transfer(params, k[0], k[1].address, 5, 0)
    box.add(tx, 1.0)
    again = Outbox.for_wallet(store)
    assert [e.tx for e in again] == [tx] and not again.entries[0].submitted
    again.remove({tx.hash()})
    assert Outbox.for_wallet(store).entries == []
    Path(box.path).write_text("{broken")
    with pytest.raises(WalletError) as err:
        Outbox.for_wallet(store)
    assert err.value.reason == "bad-outbox"
