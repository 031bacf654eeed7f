"""The classic hash engine: a header is sealed when ``SHA-256(header) <= target``.

Targets use Bitcoin's compact ``bits`` form. Every ``retarget_interval`` blocks the target is
scaled by the time the interval actually took over the time it should have taken, clamped to
a factor of four either way and never easier than ``limit_bits``. A block's work is
``2**256 // (target + 1)``, so fork choice follows the branch with the most expected hashes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from consensus.errors import InvalidBlock
from consensus.params import ChainParams
from consensus.state import ChainView
from consensus.types import Block, Header


def bits_to_target(bits: int) -> int:
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if bits & 0x00800000:
        return 0  # negative targets are invalid; zero can never be met
    if exponent <= 3:
        return mantissa >> (8 * (3 - exponent))
    return mantissa << (8 * (exponent - 3))


def target_to_bits(target: int) -> int:
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def work_of(bits: int) -> int:
    target = bits_to_target(bits)
    return 0 if target <= 0 else 2**256 // (target + 1)


class PowEngine:
    name = "pow"

    def __init__(self, params: ChainParams) -> None:
        self.params = params
        self.pow = params.pow

    def expected_bits(self, parent: Header, chain: ChainView) -> int:
        p = self.pow
        if parent.height == 0:
            return p.initial_bits
        height = parent.height + 1
        if p.no_retarget or height % p.retarget_interval != 0:
            return parent.bits
        first = chain.ancestor(parent, height - p.retarget_interval)
        expected = p.target_spacing * p.retarget_interval
        actual = min(max(parent.timestamp - first.timestamp, expected // 4), expected * 4)
        target = bits_to_target(parent.bits) * actual // expected
        return target_to_bits(min(target, bits_to_target(p.limit_bits)))

    def validate_seal(self, block: Block, parent: Header, chain: ChainView) -> None:
        header = block.header
        want = self.expected_bits(parent, chain)
        if header.bits != want:
            raise InvalidBlock("bad-diffbits", f"bits {header.bits:#x}, expected {want:#x}")
        if int.from_bytes(header.hash(), "big") > bits_to_target(header.bits):
            raise InvalidBlock("high-hash", "proof of work does not meet the target")
        if block.proof is not None or header.genotype or header.score:
            raise InvalidBlock("bad-seal", "a pow block carries no deep-learning seal")

    def work_verdict(self, block: Block, weights: bytes) -> None:
        """Nothing expensive: the hash is the whole proof, checked with the seal."""
        return None

    def validate_work(
        self, block: Block, parent: Header, chain: ChainView, weights: bytes | None = None, verdict: object = None,
    ) -> None:
        """Nothing left to check: the hash was the whole proof."""

    def block_work(self, block: Block) -> int:
        return work_of(block.header.bits)

    def next_work(self, parent: Header, chain: ChainView) -> dict[str, Any]:
        return {"engine": self.name, "bits": self.expected_bits(parent, chain)}


def solve(header: Header, max_tries: int = 10_000_000) -> Header:
    """Search nonces until the header meets its target (a CPU miner for regtest and devnet)."""
    target = bits_to_target(header.bits)
    for nonce in range(max_tries):
        candidate = replace(header, nonce=nonce)
        if int.from_bytes(candidate.hash(), "big") <= target:
            return candidate
    raise RuntimeError(f"no nonce found in {max_tries} tries")
