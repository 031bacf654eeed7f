"""``ponas wallet``: create, import, list, address, balance, send, history, tx, resend.

Every command prints a table for people, or JSON with ``--json``. Errors print
``error: REASON: detail`` on stderr (and ``{"error": {"reason", "detail"}}`` on stdout with
``--json``) and exit 1; nothing already stored is changed by a failing command.

Where things come from:

- **home**: ``--home DIR``, else ``$PONAS_HOME``, else ``~/.ponas``; wallets live in
  ``HOME/wallets/NAME.wallet``;
- **node**: ``--node URL``, else ``$PONAS_NODE``, else ``node = "..."`` in the ``[wallet]``
  table of ``HOME/config.toml`` (which may also set ``wallet = "NAME"``, the default wallet);
- **password**: ``--password-file FILE``, else ``$PONAS_WALLET_PASSWORD``, else a prompt on
  the terminal (asked twice when a wallet is created).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO

from consensus.amounts import format_amount, parse_amount
from consensus.crypto import address_of, format_address, parse_address
from consensus.errors import ConsensusError
from nodeclient import NodeClient, NodeError, normalise_url, session
from wallet import actions
from wallet.errors import WalletError
from wallet.keys import WORD_COUNTS, new_mnemonic, normalise_mnemonic
from wallet.keystore import Keystore, Outbox, check_name, list_wallets, wallet_path

PASSWORD_ENV = "PONAS_WALLET_PASSWORD"
NODE_ENV = "PONAS_NODE"
HOME_ENV = "PONAS_HOME"
DEFAULT_WALLET = "default"
EXIT_ERROR = 1


# --- registration -------------------------------------------------------------------------------


def register_wallet(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help=f"wallet home (default ${HOME_ENV} or ~/.ponas)")
    common.add_argument("-w", "--wallet", metavar="NAME", help=f"which wallet (default: config, else {DEFAULT_WALLET!r})")
    common.add_argument("--node", metavar="URL", help=f"the node's API (default ${NODE_ENV} or the config file)")
    common.add_argument("--password-file", metavar="FILE", help=f"read the password from FILE (else ${PASSWORD_ENV}, else a prompt)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("wallet", help="keys, balances and transfers (talks to a node's REST API)")
    wsub = p.add_subparsers(dest="wallet_command", metavar="ACTION")
    wsub.required = True

    def action(name: str, help_: str, func: Callable[[argparse.Namespace, TextIO], Any]) -> argparse.ArgumentParser:
        a = wsub.add_parser(name, help=help_, parents=[common], description=help_)
        a.set_defaults(func=lambda args: run(func, args))
        return a

    c = action("create", "create a wallet; shows its recovery words once", cmd_create)
    c.add_argument("--words", type=int, default=24, choices=sorted(WORD_COUNTS), help="mnemonic length (default 24)")
    i = action("import", "restore a wallet from its recovery words", cmd_import)
    i.add_argument("--mnemonic-file", metavar="FILE", help="read the words from FILE ('-': standard input); else a prompt")
    i.add_argument("--accounts", type=int, default=1, help="how many addresses to restore (default 1)")
    action("list", "the wallets in the home directory", cmd_list)
    a = action("address", "the wallet's addresses", cmd_address)
    a.add_argument("--new", action="store_true", help="derive and record the next address (needs the password)")
    action("balance", "confirmed and pending balance of each address", cmd_balance)
    s = action("send", "send coins: sign with the chain id, submit, optionally wait for the block", cmd_send)
    s.add_argument("to", metavar="TO", help="recipient address (pn1...)")
    s.add_argument("amount", metavar="AMOUNT", help="coins, a decimal such as 12.5 (at most 8 decimals)")
    s.add_argument("--fee", metavar="COINS", help="fee in coins (default: the node's suggestion)")
    s.add_argument("--from", dest="sender", metavar="ADDR", help="pay from this address (default: the first that can)")
    s.add_argument("--wait", action="store_true", help="wait until a block includes the transfer")
    s.add_argument("--wait-timeout", type=float, default=900.0, metavar="SECONDS", help="give up waiting after this (default 900)")
    s.add_argument("--offline", action="store_true",
                   help="sign without a node (needs --chain-id, --nonce and --fee); the transfer is kept for `resend`")
    s.add_argument("--chain-id", help="with --offline: the chain to sign for")
    s.add_argument("--nonce", type=int, help="with --offline: the sender's next nonce")
    h = action("history", "incoming and outgoing transfers and coinbase payouts", cmd_history)
    h.add_argument("--limit", type=int, default=50, help="at most this many entries (default 50)")
    t = action("tx", "one transaction: confirmed, pending, or kept unsent", cmd_tx)
    t.add_argument("hash", metavar="HASH")
    action("resend", "submit the transfers kept in the outbox again; forget confirmed ones", cmd_resend)


# --- plumbing -----------------------------------------------------------------------------------


def run(func: Callable[[argparse.Namespace, TextIO], Any], args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run one command; a wallet, node, address or amount error becomes exit 1 with its reason."""
    out = out or sys.stdout
    try:
        result = func(args, out)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except (WalletError, NodeError, ConsensusError) as exc:
        reason, detail = exc.reason, exc.detail
    if args.json:
        print(json.dumps({"error": {"reason": reason, "detail": detail}}), file=out)
    print(f"error: {reason}: {detail}" if detail else f"error: {reason}", file=sys.stderr)
    return EXIT_ERROR


def home_dir(args: argparse.Namespace) -> str:
    return os.path.abspath(os.path.expanduser(args.home or os.environ.get(HOME_ENV) or "~/.ponas"))


def load_config(home: str) -> dict[str, Any]:
    """The ``[wallet]`` table of ``HOME/config.toml`` ({} when there is no file)."""
    path = os.path.join(home, "config.toml")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WalletError("bad-config", f"{path}: {exc}") from None
    table = data.get("wallet", {})
    if not isinstance(table, dict) or any(not isinstance(table.get(k, ""), str) for k in ("node", "wallet")):
        raise WalletError("bad-config", f"{path}: [wallet] holds strings node = \"URL\" and wallet = \"NAME\"")
    return table


def wallet_name(args: argparse.Namespace) -> str:
    return check_name(args.wallet or load_config(home_dir(args)).get("wallet") or DEFAULT_WALLET)


def node_url(args: argparse.Namespace) -> str:
    url = args.node or os.environ.get(NODE_ENV) or load_config(home_dir(args)).get("node")
    if not url:
        raise WalletError("no-node", f"which node? give --node URL, set ${NODE_ENV}, or node = \"URL\" under [wallet] "
                          f"in {os.path.join(home_dir(args), 'config.toml')}")
    return normalise_url(url)


def read_text(path: str, reason: str) -> str:
    """A small file a person pointed us at ('-': standard input); unreadable -> ``reason``."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(1 << 16)
    except (OSError, UnicodeDecodeError) as exc:
        raise WalletError(reason, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def read_password(args: argparse.Namespace, confirm: bool = False) -> str:
    if args.password_file:
        text = read_text(args.password_file, "no-password")
        return text[:-1] if text.endswith("\n") else text
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise WalletError("no-password", f"no terminal to ask on: use --password-file FILE or ${PASSWORD_ENV}")
    password = getpass.getpass("Wallet password: ")
    if confirm and getpass.getpass("Repeat the password: ") != password:
        raise WalletError("password-mismatch", "the two passwords differ; nothing was written")
    return password


async def with_node(args: argparse.Namespace, work: Callable[[NodeClient], Awaitable[Any]]) -> Any:
    url = node_url(args)
    async with session() as http:
        return await work(NodeClient(http, url))


def emit(args: argparse.Namespace, out: TextIO, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text, file=out)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Rows under headers, columns as wide as their widest cell; ``right``: right-aligned columns."""
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(cells[0])] + [line(r) for r in cells[1:]])


def coins(units: int, signed: bool = False) -> str:
    text = format_amount(units)
    return f"+{text}" if signed and units > 0 else text


def short(hex_text: str | None, n: int = 16) -> str:
    return "" if not hex_text else hex_text[:n] + ("…" if len(hex_text) > n else "")


# --- commands without a node --------------------------------------------------------------------


def cmd_create(args: argparse.Namespace, out: TextIO) -> int:
    home, name = home_dir(args), wallet_name(args)
    if os.path.lexists(wallet_path(home, name)):
        raise WalletError("wallet-exists", f"a wallet named {name!r} exists; choose another --wallet NAME")
    password = read_password(args, confirm=True)
    phrase = new_mnemonic(args.words)
    store = Keystore.create(home, name, phrase, password)
    address = format_address(store.addresses[0])
    words = phrase.split()
    grid = "\n".join("  " + "  ".join(f"{i + 1:>2}. {w:<10}" for i, w in list(enumerate(words))[r::6]).rstrip()
                     for r in range(6)) if len(words) % 6 == 0 else "  " + phrase
    emit(args, out, {"wallet": name, "file": store.path, "address": address, "mnemonic": phrase},
         f"created wallet {name!r} in {store.path}\naddress: {address}\n\n"
         f"Write these {len(words)} words down and keep them offline. They restore this wallet "
         f"(`ponas wallet import`);\nthey are not shown again and not needed for daily use:\n\n{grid}")
    return 0


def cmd_import(args: argparse.Namespace, out: TextIO) -> int:
    home, name = home_dir(args), wallet_name(args)
    if os.path.lexists(wallet_path(home, name)):
        raise WalletError("wallet-exists", f"a wallet named {name!r} exists; import under another --wallet NAME")
    if not 1 <= args.accounts <= 1000:
        raise WalletError("bad-path", "--accounts is 1..1000")
    if args.mnemonic_file:
        text = read_text(args.mnemonic_file, "bad-mnemonic")
    elif sys.stdin.isatty():
        text = getpass.getpass("Recovery words: ")
    else:
        raise WalletError("bad-mnemonic", "no terminal to ask on: use --mnemonic-file FILE (or - for standard input)")
    phrase = normalise_mnemonic(text)  # checked before a password is asked
    store = Keystore.create(home, name, phrase, read_password(args, confirm=True), accounts=args.accounts)
    addresses = [format_address(a) for a in store.addresses]
    emit(args, out, {"wallet": name, "file": store.path, "addresses": addresses},
         f"imported wallet {name!r} into {store.path}\n" + "\n".join(f"address {i}: {a}" for i, a in enumerate(addresses)))
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    home = home_dir(args)
    rows = []
    for name in list_wallets(home):
        try:
            store = Keystore.load(home, name)
            rows.append({"wallet": name, "address": format_address(store.addresses[0]), "addresses": len(store.addresses),
                         "file": store.path, "error": None})
        except WalletError as exc:
            rows.append({"wallet": name, "address": None, "addresses": 0, "file": wallet_path(home, name), "error": exc.reason})
    text = table(["WALLET", "ADDRESS", "ADDRESSES", "FILE"],
                 [[r["wallet"], r["address"] or f"({r['error']})", r["addresses"], r["file"]] for r in rows], right=[2])
    emit(args, out, {"home": home, "wallets": rows}, text if rows else f"no wallets in {home}; `ponas wallet create`")
    return 0


def cmd_address(args: argparse.Namespace, out: TextIO) -> int:
    store = Keystore.load(home_dir(args), wallet_name(args))
    if args.new:
        store.add_address(read_password(args))
    addresses = [format_address(a) for a in store.addresses]
    emit(args, out, {"wallet": store.name, "addresses": addresses},
         table(["#", "ADDRESS"], [[i, a] for i, a in enumerate(addresses)], right=[0]))
    return 0


# --- commands that talk to a node -------------------------------------------------------------


async def cmd_balance(args: argparse.Namespace, out: TextIO) -> int:
    store = Keystore.load(home_dir(args), wallet_name(args))
    views = await with_node(args, lambda c: actions.account_views(c, store.addresses))
    total = sum(v.balance for v in views)
    pending = sum(v.pending_in - v.pending_out for v in views)
    data = {"wallet": store.name, "balance": total, "balance_coins": format_amount(total), "pending": pending,
            "addresses": [{"address": format_address(v.address), "balance": v.balance, "pending": v.pending_in - v.pending_out,
                           "nonce": v.nonce, "balance_coins": format_amount(v.balance)} for v in views]}
    rows = [[format_address(v.address), coins(v.balance), coins(v.pending_in - v.pending_out, True), v.nonce] for v in views]
    if len(views) > 1:
        rows.append(["total", coins(total), coins(pending, True), ""])
    emit(args, out, data, table(["ADDRESS", "BALANCE", "PENDING", "NONCE"], rows, right=[1, 2, 3]))
    return 0


async def cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    # Everything a person can mistype is checked before the node or the password is touched.
    recipient = parse_address(args.to.strip())
    amount = parse_amount(args.amount)
    fee = parse_amount(args.fee, allow_zero=True) if args.fee is not None else None
    sender = parse_address(args.sender.strip()) if args.sender else None
    store = Keystore.load(home_dir(args), wallet_name(args))
    outbox = Outbox.for_wallet(store)
    if args.offline:
        if args.chain_id is None or args.nonce is None or fee is None:
            raise WalletError("bad-args", "--offline signs without a node: give --chain-id, --nonce and --fee")
        plan = actions.SendPlan(args.chain_id, sender or store.addresses[0], recipient, amount, fee, args.nonce, 0)
        if plan.sender not in store.addresses:
            raise WalletError("not-mine", f"{format_address(plan.sender)} is not an address of this wallet")
        entry = actions.sign_and_keep(plan, store.unlock(read_password(args)), outbox)
        emit(args, out, {"hash": entry.hash.hex(), "status": "kept", "outbox": outbox.path},
             f"signed {entry.hash.hex()} offline; kept in {outbox.path}. `ponas wallet resend` submits it.")
        return 0
    url = node_url(args)
    async with session() as http:
        client = NodeClient(http, url)
        plan = await actions.prepare_send(client, store.addresses, outbox, recipient, amount, fee, sender)
        entry = actions.sign_and_keep(plan, store.unlock(read_password(args)), outbox)
        try:
            await actions.submit(client, outbox, entry)
        except NodeError as exc:
            if entry in outbox.entries:
                raise WalletError("node-unavailable", f"{exc.detail or exc.reason}. The signed transfer {entry.hash.hex()} "
                                  f"is kept in {outbox.path}; `ponas wallet resend` submits it") from None
            raise
        data: dict[str, Any] = {"hash": entry.hash.hex(), "from": format_address(plan.sender), "to": format_address(recipient),
                                "amount": amount, "fee": plan.fee, "nonce": plan.nonce, "status": "pending"}
        text = (f"sent {coins(amount)} to {format_address(recipient)} (fee {coins(plan.fee)}, nonce {plan.nonce})\n"
                f"transaction {entry.hash.hex()}")
        if args.wait:
            found = await actions.wait_confirmed(client, entry.hash, args.wait_timeout, _wait_progress())
            outbox.remove({entry.hash})
            data.update(status="confirmed", height=found.get("height"), block=found.get("block"))
            text += f"\nconfirmed in block {found.get('height')} ({short(found.get('block'))})"
    emit(args, out, data, text)
    return 0


def _wait_progress() -> Callable[[float, int | None], None]:
    last = [0.0]

    def show(elapsed: float, height: int | None) -> None:
        if elapsed - last[0] >= 5.0:
            last[0] = elapsed
            print(f"waiting for a block: {elapsed:.0f}s, tip at height {height}", file=sys.stderr, flush=True)

    return show


async def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    if not 1 <= args.limit <= 500:
        raise WalletError("bad-args", "--limit is 1..500")
    store = Keystore.load(home_dir(args), wallet_name(args))
    outbox = Outbox.for_wallet(store)
    items = await with_node(args, lambda c: actions.history(c, store.addresses, args.limit))
    known = {i.get("hash") for i in items}
    unsent = [e for e in outbox if not e.submitted and e.hash.hex() not in known]
    for e in unsent:
        items.insert(0, {"height": None, "kind": "transfer", "status": "not sent", "hash": e.hash.hex(),
                         "from": format_address(address_of(e.tx.sender)), "to": format_address(e.tx.recipient),
                         "amount": e.tx.amount, "fee": e.tx.fee, "delta": -(e.tx.amount + e.tx.fee),
                         "direction": "out", "address": format_address(address_of(e.tx.sender)), "time": e.created})
    rows = []
    for i in items:
        when = "not sent" if i.get("status") == "not sent" else "pending" if i.get("height") is None else str(i["height"])
        other = i.get("from") if i.get("direction") == "in" else i.get("to")
        label = {"coinbase": "payout", "genesis": "genesis"}.get(i.get("kind", ""), i.get("direction", ""))
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(i["time"])) if i.get("time") else ""
        rows.append([when, stamp, label, coins(i.get("delta", 0), True), coins(i["fee"]) if i.get("fee") and i.get("direction") == "out" else "",
                     other or "", short(i.get("hash"))])
    headers = ["HEIGHT", "TIME", "KIND", "AMOUNT", "FEE", "COUNTERPARTY", "TX"]
    emit(args, out, {"wallet": store.name, "items": items},
         table(headers, rows, right=[0, 3, 4]) if rows else "no transactions yet")
    return 0


async def cmd_tx(args: argparse.Namespace, out: TextIO) -> int:
    try:
        tx_hash = bytes.fromhex(args.hash.strip())
    except ValueError:
        tx_hash = b""
    if len(tx_hash) != 32:
        raise WalletError("bad-args", "a transaction hash is 64 hex digits")
    found = await with_node(args, lambda c: actions.tx_status(c, tx_hash))
    if found is None:
        try:
            store = Keystore.load(home_dir(args), wallet_name(args))
            kept = next((e for e in Outbox.for_wallet(store) if e.hash == tx_hash), None)
        except WalletError:
            kept = None
        if kept is None:
            raise WalletError("unknown-tx", f"neither the node nor this wallet's outbox knows {tx_hash.hex()}")
        found = {"hash": tx_hash.hex(), "status": "kept, not sent", "tx": {
            "from": format_address(address_of(kept.tx.sender)), "to": format_address(kept.tx.recipient),
            "amount": kept.tx.amount, "fee": kept.tx.fee, "nonce": kept.tx.nonce}}
    tx = found.get("tx") or {}
    rows = [["hash", found.get("hash")], ["status", found.get("status")]]
    if found.get("status") == "confirmed":
        rows += [["block", found.get("block")], ["height", found.get("height")], ["confirmations", found.get("confirmations")]]
    if tx:
        rows += [["from", tx.get("from")], ["to", tx.get("to")], ["amount", coins(tx.get("amount", 0))],
                 ["fee", coins(tx.get("fee", 0))], ["nonce", tx.get("nonce")]]
    for p in found.get("coinbase") or []:
        rows.append(["payout", f"{p.get('address')} {coins(p.get('amount', 0))}"])
    emit(args, out, found, table(["FIELD", "VALUE"], rows))
    return 0


async def cmd_resend(args: argparse.Namespace, out: TextIO) -> int:
    store = Keystore.load(home_dir(args), wallet_name(args))
    outbox = Outbox.for_wallet(store)
    if not outbox.entries:
        emit(args, out, {"results": []}, "the outbox is empty")
        return 0
    results = await with_node(args, lambda c: actions.resend(c, outbox))
    emit(args, out, {"results": [{"hash": e.hash.hex(), "nonce": e.tx.nonce, "result": r} for e, r in results]},
         table(["TX", "NONCE", "RESULT"], [[short(e.hash.hex()), e.tx.nonce, r] for e, r in results], right=[1]))
    return 0 if all(not r.startswith("dropped") for _, r in results) else EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """``ponas wallet ...`` on its own (tests and ``python -m wallet.cli``)."""
    parser = argparse.ArgumentParser(prog="ponas")
    sub = parser.add_subparsers(dest="command", required=True)
    register_wallet(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
