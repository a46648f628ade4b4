"""Fault tests share the session's private RabbitMQ node; the figures are summed up at the end."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests._rabbit_node import PrivateRabbit
from tests.faults._harness import REPORTS


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
