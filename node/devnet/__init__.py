"""``ponas devnet``: a whole PoNAS network as local processes, for demos and development.

One directory holds everything of one devnet::

    DIR/devnet.json     the manifest: topology, ports, accounts, and every process (argv, pid, log)
    DIR/genesis.json    the chain (preset regtest or devnet), with the demo wallets prefunded
    DIR/beacon.key      the beacon closer's key; node0 closes the rounds with it
    DIR/beacon-backup.key  the backup closer's key (same round keys, its own signing key); node1
                        closes a round with it when node0 has been silent for closer_timeout
    DIR/keys/           commitment and payout keys of the pool, its members and the solo miners
    DIR/home/           a wallet home (PONAS_HOME): wallets alice and bob, password file, config.toml
    DIR/node0/ ...      the nodes' datadirs;  DIR/pool/  the pool manager's datadir
    DIR/logs/NAME.log   what each process wrote

``up`` writes all that (``init`` writes it without starting anything, for docker-compose), then
starts the nodes (node0 holds the beacon's key, the others peer with it), the pool manager (on
node1), its members and the solo miners (on the last node), each in its own session so that a
Ctrl-C reaches the launcher only, and waits until each answers. Miners run at a lower CPU
priority than nodes: on a small machine the nodes' verification must not starve. It then shows
one row per block (winner, architecture, score, payouts) until ``--rounds`` blocks are in, checks
that every node has the same blocks, prints a summary and stops every process (``--keep``
leaves them running; ``ponas devnet status`` and ``ponas devnet down`` work on them). Ctrl-C
or SIGTERM while it watches prints the summary of the blocks so far, then stops every process.

This package only starts processes and talks to them over their HTTP APIs; the one library it
uses from above the node is the wallet's keystore, to write the demo wallets. Its modules, each
importing only those below it::

    cli       the flags (``register_devnet``) and the thin commands: parse, call, print
    watch     a row per block, the transfer of ``--send``, the summary (``summary.json``)
    launcher  the directory made ready or resumed; processes started, waited for, stopped
    plan      ports, every process's command line, the files ``init`` writes; starts nothing
    manifest  ``devnet.json`` as frozen dataclasses (``Manifest``, ``ProcessEntry``, ``Topology``)
    errors    ``DevnetError`` and its stable reason codes
"""

from __future__ import annotations

from node.devnet.cli import register_devnet

__all__ = ["register_devnet"]
