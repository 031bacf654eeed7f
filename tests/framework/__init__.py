"""The test framework: scenarios and helpers that tests and the reliability harnesses share.

After Bitcoin Core's ``test_framework`` and py-evm's ``NoProofConsensus``:

* :mod:`.nodes` - N in-process nodes: start, connect, ``sync_blocks``, ``split_network`` and
  ``join_network``, ``mine_pow``; :class:`.nodes.NodeNetwork` always stops every node.
* :mod:`.peer` - :class:`.peer.FakePeer`: completes the handshake, sends crafted messages and
  asserts the node's verdict (``send_and_expect(msg, reason="bad-...")``).
* :mod:`.procs` - real processes: the ``ponas`` argv, ``child_env``, ``say``, ``free_port``,
  ``wait_until``, :class:`.procs.Procs` (process groups, always killed), ``start_node_process``.
* :mod:`.chainview` - :class:`.chainview.MemoryView`, an in-memory ``ChainView`` for the pure rules.
* :mod:`.noproof` - :class:`.noproof.NoProofVerifier` and ``noproof_engine``: ``ponas`` rounds
  without training; :mod:`.miner` - a no-proof miner on the real round driver.
* :mod:`.crash` - the crash scenario (kill a node during writes, compare its state).
"""
