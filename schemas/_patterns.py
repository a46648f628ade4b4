"""Regular expressions for the rules validators enforce, written once for both sides.

A validator that checks a value with code (`ipaddress`, `str.isprintable`) publishes a JSON
Schema `pattern` built here, so the contract a client reads (`/openapi.json`,
`/asyncapi.json`) admits only values the validator accepts. Every pattern uses only what
ECMA-262 (JSON Schema's dialect) and Python's `re` read alike: classes, groups, alternation,
counted repetition and a negative lookahead; no flags, no `\\p{...}`, no lookbehind.

A CIDR network may have no host bits set, which a syntax pattern cannot say: the network
patterns spell out, for each prefix length, which addresses end a network of that length.
"""

from __future__ import annotations

import functools
from collections import defaultdict

__all__ = [
    "HOSTNAME",
    "IPV4_OCTET",
    "NETWORK_SYNTAX",
    "ipv4_networks",
    "ipv6_networks",
    "numbers",
]

IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_HEX = "[0-9a-fA-F]"
_HEX_GROUP = _HEX + "{1,4}"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"

HOSTNAME = rf"(?:{_HOST_LABEL}\.)*(?![0-9]+$){_HOST_LABEL}"
"""An RFC 1123 host name whose last label is not all digits (that is a mistyped IPv4 address)."""

_IPV4 = rf"{IPV4_OCTET}(?:\.{IPV4_OCTET}){{3}}"
_IPV6 = "|".join(
    (
        rf"(?:{_HEX_GROUP}:){{7}}{_HEX_GROUP}",
        rf"(?:{_HEX_GROUP}:){{1,7}}:",
        *(
            rf"(?:{_HEX_GROUP}:){{1,{left}}}(?::{_HEX_GROUP}){{1,{7 - left}}}"
            for left in range(6, 0, -1)
        ),
        rf":(?:(?::{_HEX_GROUP}){{1,7}}|:)",
        # an IPv4 address in the last 32 bits, as `::ffff:192.0.2.1`
        rf"::(?:[fF]{{4}}(?::0{{1,4}})?:)?{_IPV4}",
        rf"(?:{_HEX_GROUP}:){{1,4}}:{_IPV4}",
    )
)
NETWORK_SYNTAX = (
    rf"(?:{_IPV4}/(?:3[0-2]|[12]?[0-9])"
    rf"|(?:{_IPV6})/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))"
)
"""Any IPv4 or IPv6 address with a prefix length: the shape `str(ipaddress.ip_network(...))`
has, host bits or not."""


def numbers(values: set[int]) -> str:
    """A regex matching exactly the decimal numbers in `values` (no leading zeros)."""
    return _alternation(frozenset(str(v) for v in values))


def _alternation(strings: frozenset[str]) -> str:
    # Factor on the last digit: strings that end alike share the regex of their beginnings.
    if strings == {""}:
        return ""
    endings: dict[str, set[str]] = defaultdict(set)
    for text in strings - {""}:
        endings[text[:-1]].add(text[-1])
    beginnings: dict[frozenset[str], set[str]] = defaultdict(set)
    for start, last in endings.items():
        beginnings[frozenset(last)].add(start)
    parts = sorted(
        _alternation(frozenset(starts)) + _digit_class(last) for last, starts in beginnings.items()
    )
    body = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
    return f"(?:{body})?" if "" in strings else body


def _digit_class(digits: frozenset[str]) -> str:
    if len(digits) == 1:
        return next(iter(digits))
    ordered = sorted(digits)
    if len(ordered) == int(ordered[-1]) - int(ordered[0]) + 1:
        return f"[{ordered[0]}-{ordered[-1]}]"
    return "[" + "".join(ordered) + "]"


@functools.cache
def ipv4_networks() -> str:
    """Exactly the IPv4 networks in dotted-decimal `address/prefix` form with no host bits."""
    per_octets = []
    for full in range(4):
        choices = []
        for bits in range(8):
            ends = numbers({n << (8 - bits) for n in range(1 << bits)})
            zeros = r"\.0" * (3 - full)
            choices.append(f"{ends}{zeros}/{8 * full + bits}")
        per_octets.append(rf"(?:{IPV4_OCTET}\.){{{full}}}(?:{'|'.join(choices)})")
    per_octets.append(rf"{_IPV4}/32")
    return "(?:" + "|".join(per_octets) + ")"


@functools.cache
def ipv6_networks() -> str:
    """Every IPv6 network, written as its leading groups, then `::` (`2001:db8:a800::/37`).

    The validator takes every other spelling too (zeros written out, `::` elsewhere); this
    one is complete (every network has it) and short enough to publish.
    """
    per_groups = []
    for full in range(8):
        lead = rf"(?:{_HEX_GROUP}:){{{full}}}"
        choices = ["::/0" if full == 0 else f":/{16 * full}"]
        for bits in range(1, 16):
            tail = "" if full == 7 else "::"
            choices.append(f"{_boundary_group(bits)}{tail}/{16 * full + bits}")
        per_groups.append(f"{lead}(?:{'|'.join(choices)})")
    per_groups.append(rf"(?:{_HEX_GROUP}:){{7}}{_HEX_GROUP}/128")
    return "(?:" + "|".join(per_groups) + ")"


def _boundary_group(bits: int) -> str:
    """A group whose first `bits` bits may be anything and the rest are zero, in 1-4 digits
    (leading zeros may be left out)."""
    nibbles = [_nibble(max(0, min(4, bits - 4 * i))) for i in range(4)]
    leading, full = "", 0  # any ending of the nibbles so far, the empty one included
    for nibble in nibbles[:-1]:
        if nibble == _HEX and leading in ("", f"{_HEX}{{0,{full}}}"):
            full += 1
            leading = f"{_HEX}{{0,{full}}}"
        else:
            leading = f"(?:{leading}{nibble})?" if leading else f"{nibble}?"
    return leading + nibbles[-1]


def _nibble(bits: int) -> str:
    step = 1 << (4 - bits)
    digits = "".join(sorted({f"{v:x}" for v in range(0, 16, step)}))
    if bits == 0:
        return "0"
    letters = "".join(c.upper() for c in digits if c.isalpha())
    return _HEX if bits == 4 else f"[{digits}{letters}]"
