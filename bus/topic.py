"""AMQP topic matching, as RabbitMQ does it: the one implementation govbus uses (the embedded
broker's routing, taps that filter a stream, the test helpers)."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=8192)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words split by `.`, `*` is exactly one word, `#` zero or more."""
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])
