"""Fault tests share the session's private RabbitMQ node; the figures are summed up at the end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._rabbit_node import PrivateRabbit
from tests.faults._harness import REPORTS

DEFINITIONS = Path(__file__).resolve().parents[2] / "compose" / "rabbitmq" / "definitions.json"
"""The compose deployment's users, permissions and topic permissions."""


@pytest.fixture(scope="module")
def compose_node() -> Iterator[PrivateRabbit]:
    """A node of the module's own with `compose/rabbitmq/definitions.json` imported: the
    compose users, each with its least privileges (they replace those of vhost `/`)."""
    node = PrivateRabbit()
    try:
        node.start()
        node.import_definitions(DEFINITIONS)
        yield node
    finally:
        node.stop()


@pytest.fixture
async def node(private_rabbit: PrivateRabbit) -> PrivateRabbit:
    """The private node, serving (a previous test may have left its app stopped)."""
    await asyncio.to_thread(private_rabbit.ensure_app_running)
    return private_rabbit


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault suite figures")
    for figures in REPORTS:
        terminalreporter.write_line(json.dumps(figures))
