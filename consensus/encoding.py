"""The one canonical encoding, used for hashing, storage and the wire.

Objects are msgpack values restricted to: integers in [-2**63, 2**64), byte strings (msgpack
``bin``), UTF-8 text, booleans, nil and arrays. Maps, floats and extension types are not
allowed. Every value has exactly one encoding (msgpack's smallest form), and :func:`decode`
enforces it: bytes that decode but do not re-encode to themselves, trailing bytes, truncated
input, floats, maps and extension types are all rejected with :class:`DecodeError`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from consensus.errors import DecodeError

Value = int | bytes | str | bool | None | list | tuple  # type: ignore[type-arg]

#: Upper bound for one decoded object; the wire and storage impose tighter ones.
MAX_ENCODED_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError("too-deep", f"nesting over {MAX_DEPTH}")
    if isinstance(value, bool) or value is None or isinstance(value, (bytes, str)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise DecodeError("int-range", str(value))
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
        return
    raise DecodeError("bad-type", type(value).__name__)


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically. Raises :class:`DecodeError` for values outside the model."""
    _check(value, 0)
    return _packb(value)


def encode_checked(value: Value) -> bytes:
    """Encode a value already known to be in the model (built by the typed codec, whose
    constructors checked every field): skips the type walk of :func:`encode`."""
    return _packb(value)


def _packb(value: Value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError("bad-type", f"extension type {code}")


def _reject_map(pairs: Any) -> Any:
    raise DecodeError("bad-type", "map")


def decode(data: bytes, max_size: int = MAX_ENCODED_BYTES) -> Any:
    """Decode canonical bytes into lists, ints, bytes, str, bool and None.

    Raises :class:`DecodeError` with reason ``too-large``, ``trailing-bytes``, ``truncated``,
    ``bad-type``, ``bad-utf8``, ``malformed`` or ``non-canonical``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("bad-type", "decode needs bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError("too-large", f"{len(data)} > {max_size} bytes")
    if not data:
        raise DecodeError("truncated", "empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=_reject_ext,
            object_pairs_hook=_reject_map,
        )
    except DecodeError:
        raise
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing-bytes", f"{len(exc.extra)} bytes after the object") from None
    except (msgpack.OutOfData, ValueError) as exc:
        if isinstance(exc, UnicodeDecodeError):
            raise DecodeError("bad-utf8", str(exc)) from None
        text = str(exc).lower()
        if isinstance(exc, msgpack.OutOfData) or "incomplete" in text or "exceeds max" in text:
            raise DecodeError("truncated", str(exc) or "input ends inside an object") from None
        raise DecodeError("malformed", str(exc)) from None
    except Exception as exc:  # msgpack raises a few odd types on hostile input
        raise DecodeError("malformed", f"{type(exc).__name__}: {exc}") from None
    if isinstance(value, float) or _has_float(value, 0):
        raise DecodeError("bad-type", "float")
    _check(value, 0)
    if encode(value) != data:
        raise DecodeError("non-canonical", "value does not re-encode to the same bytes")
    return value


def _has_float(value: Any, depth: int) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list) and depth <= MAX_DEPTH:
        return any(_has_float(v, depth + 1) for v in value)
    return False


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash_of(value: Value) -> bytes:
    """The 32-byte hash of a value: SHA-256 of its canonical encoding."""
    return hashlib.sha256(encode(value)).digest()
