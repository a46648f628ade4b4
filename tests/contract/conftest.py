"""The contract suite runs every test twice (`broker_url`, tests/conftest.py): on the embedded
broker and on RabbitMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bus.transport import Transport, create_transport


@pytest.fixture
async def transport(broker_url: str) -> AsyncIterator[Transport]:
    t = create_transport(broker_url, name="contract")
    await t.connect()
    yield t
    await t.close()


@pytest.fixture
def name(unique: str) -> str:
    """The suite's word for `unique`: a prefix for this test's exchanges and queues."""
    return unique
