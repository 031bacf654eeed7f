"""Typed objects <-> canonical values, for frozen dataclasses.

A consensus object is a frozen, slotted dataclass that inherits :class:`Codec`. It encodes as
the array of its fields in declaration order; a field whose type is a union of codec classes
encodes as ``[TAG, *fields]``. Decoding checks every field's type strictly (no bool for int,
exact array lengths, fixed byte lengths declared with ``Annotated[bytes, Length(n)]``) and then runs
the class's own ``__post_init__`` checks, so an object that exists is well formed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
import typing
from typing import Annotated, Any, ClassVar, TypeVar, Union, get_args, get_origin

from consensus.encoding import decode, encode_checked
from consensus.errors import DecodeError

T = TypeVar("T", bound="Codec")


@dataclasses.dataclass(frozen=True, slots=True)
class Length:
    """``Annotated[bytes, Length(32)]``: the codec checks the byte string is this long."""

    n: int


class Codec:
    """Mixin giving a frozen dataclass a canonical encoding and hash."""

    __slots__ = ()
    TAG: ClassVar[int] = 0
    #: How many of the last fields were added to the format later: each is left out of the
    #: encoding while it and every field after it hold their defaults, so that what was
    #: encoded before they existed (a genesis, its hash) encodes and hashes as it did.
    LATER_FIELDS: ClassVar[int] = 0

    def to_value(self) -> list[Any]:
        """The canonical value: ``[TAG, *fields]`` for tagged classes, else ``[*fields]``."""
        names = _field_names(type(self))  # type: ignore[arg-type]
        fields = [_to_value(getattr(self, name)) for name in names]
        for name in reversed(names[len(names) - self.LATER_FIELDS:]):
            if getattr(self, name) != _default(type(self), name):
                break
            fields.pop()
        return [self.TAG, *fields] if self.TAG else fields

    def encode(self) -> bytes:
        return encode_checked(self.to_value())

    def hash(self) -> bytes:
        return hashlib.sha256(encode_checked(self.to_value())).digest()

    @classmethod
    def from_value(cls: type[T], value: Any) -> T:
        fields = _field_types(cls)  # type: ignore[arg-type]
        if cls.TAG:
            if not isinstance(value, list) or not value or type(value[0]) is not int or value[0] != cls.TAG:
                raise DecodeError("unknown-tag", f"{cls.__name__} needs tag {cls.TAG}")
            value = value[1:]
        if not isinstance(value, list) or not len(fields) - cls.LATER_FIELDS <= len(value) <= len(fields):
            raise DecodeError("bad-shape", f"{cls.__name__} needs an array of {len(fields)}")
        kwargs = {name: _from_value(tp, item, f"{cls.__name__}.{name}") for (name, tp), item in zip(fields, value)}
        if len(value) > len(fields) - cls.LATER_FIELDS and kwargs[fields[len(value) - 1][0]] == \
                _default(cls, fields[len(value) - 1][0]):
            raise DecodeError("non-canonical", f"{cls.__name__}: a later field at its default is left out")
        try:
            return cls(**kwargs)
        except DecodeError:
            raise
        except (TypeError, ValueError) as exc:
            reason = getattr(exc, "reason", "bad-field")
            raise DecodeError(reason, f"{cls.__name__}: {exc}") from None

    @classmethod
    def decode(cls: type[T], data: bytes, max_size: int | None = None) -> T:
        value = decode(data) if max_size is None else decode(data, max_size)
        return cls.from_value(value)


@functools.cache
def _field_names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _default(cls: Any, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default


@functools.cache
def _field_types(cls: Any) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def _to_value(obj: Any) -> Any:
    if isinstance(obj, Codec):
        return obj.to_value()
    if isinstance(obj, tuple):
        return [_to_value(o) for o in obj]
    return obj


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _from_value(tp: Any, value: Any, where: str) -> Any:
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        lengths = [m.n for m in meta if isinstance(m, Length)]
        if lengths and (not isinstance(value, bytes) or len(value) != lengths[0]):
            raise DecodeError("bad-field", f"{where}: needs {lengths[0]} bytes")
        tp = base
    while hasattr(tp, "__supertype__"):
        tp = tp.__supertype__
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError("bad-field", f"{where}: needs an integer")
        return value
    if tp in (bytes, str, bool):
        if type(value) is not tp:
            raise DecodeError("bad-field", f"{where}: needs {tp.__name__}")
        return value
    if _is_union(tp):
        args = get_args(tp)
        if type(None) in args:
            if value is None:
                return None
            rest = [a for a in args if a is not type(None)]
            return _from_value(rest[0] if len(rest) == 1 else Union[tuple(rest)], value, where)  # noqa: UP007
        if not isinstance(value, list) or not value or isinstance(value[0], bool) or not isinstance(value[0], int):
            raise DecodeError("bad-field", f"{where}: needs a tagged object")
        by_tag = {a.TAG: a for a in args}
        kind = by_tag.get(value[0])
        if kind is None:
            raise DecodeError("unknown-tag", f"{where}: tag {value[0]}")
        return kind.from_value(value)
    if get_origin(tp) is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        if not isinstance(value, list):
            raise DecodeError("bad-field", f"{where}: needs an array")
        return tuple(_from_value(item_tp, v, where) for v in value)
    if isinstance(tp, type) and issubclass(tp, Codec):
        return tp.from_value(value)
    raise TypeError(f"codec cannot handle {tp!r} at {where}")  # a programming error, not input
