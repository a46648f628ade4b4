"""Basic properties encoded for the publish hot path, byte for byte as pamqp encodes them.

Profiling a publish showed pamqp's generic marshalling of the properties (a loop over every
slot, a type lookup and an encoder call per value, and the CloudEvents header table encoded
entry by entry) as the largest single cost on the client. The properties govbus sets are few
and always of the same types, and two of the four CloudEvents headers (`ce-source`,
`ce-specversion`) are the same for every message a publisher sends: those table entries are
encoded once and reused. Anything unusual (a header that is not a string, an over-long key)
takes pamqp's own encoder, so the bytes on the wire never change.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from pamqp import commands as spec
from pamqp import encode

_FLAGS = spec.Basic.Properties.flags
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

# Header values the same across a publisher's messages: their encoded table entries are kept.
_CONSTANT_HEADERS = frozenset({"ce-source", "ce-specversion"})
_entries: dict[tuple[str, str], bytes] = {}
_MAX_ENTRIES = 4096  # sources are few; the bound only guards against a caller minting many


def _short(value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 255:
        raise ValueError(f"AMQP short string longer than 255 bytes: {value[:40]!r}...")
    return _U8.pack(len(data)) + data


def _entry(key: str, value: str) -> bytes:
    """A header table entry: key (short string), 'S', value (long string)."""
    data = value.encode("utf-8")
    return _short(key) + b"S" + _U32.pack(len(data)) + data


def _table(headers: dict[str, Any]) -> bytes:
    parts = []
    for key, value in sorted(headers.items()):  # pamqp sorts the keys
        if type(value) is not str or len(key) > 128:
            return encode.field_table(headers)  # pamqp's way, for anything unusual
        if key in _CONSTANT_HEADERS:
            entry = _entries.get((key, value))
            if entry is None:
                if len(_entries) >= _MAX_ENTRIES:
                    _entries.clear()
                entry = _entries[(key, value)] = _entry(key, value)
            parts.append(entry)
        else:
            parts.append(_entry(key, value))
    body = b"".join(parts)
    return _U32.pack(len(body)) + body


def _timestamp(value: datetime.datetime) -> bytes:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=datetime.UTC)  # as pamqp: a naive time is UTC
    return _U64.pack(int(value.timestamp()))


class FastProperties(spec.Basic.Properties):
    """`Basic.Properties` with a direct `marshal` for the fields govbus sets."""

    def marshal(self) -> bytes:
        flags = 0
        parts: list[bytes] = []
        if self.content_type:
            flags |= _FLAGS["content_type"]
            parts.append(_short(self.content_type))
        if self.content_encoding:
            flags |= _FLAGS["content_encoding"]
            parts.append(_short(self.content_encoding))
        if self.headers is not None:
            flags |= _FLAGS["headers"]
            parts.append(_table(self.headers))
        if self.delivery_mode is not None:
            flags |= _FLAGS["delivery_mode"]
            parts.append(_U8.pack(self.delivery_mode))
        if self.priority is not None:
            flags |= _FLAGS["priority"]
            parts.append(_U8.pack(self.priority))
        for name in ("correlation_id", "reply_to", "expiration", "message_id"):
            value = getattr(self, name)
            if value:
                flags |= _FLAGS[name]
                parts.append(_short(value))
        if self.timestamp is not None:
            flags |= _FLAGS["timestamp"]
            parts.append(_timestamp(self.timestamp))
        for name in ("message_type", "user_id", "app_id"):
            value = getattr(self, name)
            if value:
                flags |= _FLAGS[name]
                parts.append(_short(value))
        return _U16.pack(flags) + b"".join(parts)
