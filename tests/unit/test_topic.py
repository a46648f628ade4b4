"""`bus.topic.topic_matches`: RabbitMQ's topic rules, the one matcher govbus uses."""

from __future__ import annotations

import pytest

from bus.topic import topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("registry.register", "registry.register", True),
        ("registry.register", "registry.heartbeat", False),
        ("registry.*", "registry.register", True),
        ("registry.*", "registry.instance.expired", False),  # `*` is exactly one word
        ("registry.#", "registry.instance.expired", True),
        ("registry.#", "registry", True),  # `#` may be zero words
        ("#", "anything.at.all", True),
        ("*.instance.*", "registry.instance.expired", True),
        ("#.expired", "registry.instance.expired", True),
        ("resource.*", "resources.created", False),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
    ],
)
def test_topic_rules(pattern: str, key: str, expected: bool):
    assert topic_matches(pattern, key) is expected
