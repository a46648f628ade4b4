"""A broker that answers and refuses the user is not an unreachable broker: the error says
which user was refused where, and never shows the password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from bus.errors import ConnectionLost, LoginRefused
from bus.transport.amqp import AmqpTransport

pytestmark = pytest.mark.rabbitmq


def _with(url: str, *, password: str | None = None, vhost: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password or parts.password}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{vhost}" if vhost else parts.path))


async def test_a_wrong_password_is_an_authentication_failure(amqp_url):
    parts = urlsplit(amqp_url)
    transport = AmqpTransport(_with(amqp_url, password="not-the-password"))
    with pytest.raises(LoginRefused) as info:
        await transport.connect()
    assert isinstance(info.value, ConnectionLost)  # callers that retry connections still do
    assert str(info.value) == (
        f"authentication failed: the broker at amqp://{parts.hostname}:{parts.port or 5672}/ "
        f"refused user {parts.username!r} (ACCESS_REFUSED: wrong user name or password)"
    )
    assert "not-the-password" not in str(info.value)


async def test_a_vhost_the_user_may_not_open_says_so(amqp_url, unique):
    parts = urlsplit(amqp_url)
    transport = AmqpTransport(_with(amqp_url, vhost=f"govbus-test-missing-{unique}"))
    with pytest.raises(LoginRefused) as info:
        await transport.connect()
    assert str(info.value) == (
        f"the broker at amqp://{parts.hostname}:{parts.port or 5672}/govbus-test-missing-{unique} "
        f"did not let user {parts.username!r} open vhost 'govbus-test-missing-{unique}' "
        "(NOT_ALLOWED: no such vhost, or no permission on it)"
    )
