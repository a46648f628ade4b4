"""The contract suite runs every test twice: on the embedded broker and on RabbitMQ."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from bus.transport import Transport, create_transport

AMQP_URL = os.environ.get("GOVBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(params=["memory", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "rabbitmq":
        request.applymarker(pytest.mark.rabbitmq)
        return AMQP_URL
    return f"memory://contract-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def transport(broker_url: str) -> AsyncIterator[Transport]:
    t = create_transport(broker_url, name="contract")
    await t.connect()
    yield t
    await t.close()


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
