"""Shared test infrastructure.

Markers (declared in pyproject.toml):
- ``rabbitmq``: the test uses the shared local RabbitMQ (``GOVBUS_TEST_AMQP_URL``);
- ``postgres``: the test uses the local PostgreSQL (``GOVBUS_TEST_PG_URL``);
- ``faults``: the test restarts a private RabbitMQ node (``private_rabbit``) or cuts TCP.

A backend that a selected test needs and that does not answer stops the whole run at once with
a message saying how to start it. Tests are never skipped for a missing service: a green run
means everything really ran.
"""

from __future__ import annotations

import atexit
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit
from uuid import uuid4

import pytest

from tests._rabbit_node import RABBITMQ_BIN, PrivateRabbit
from tests._vhost import finish as finish_vhosts
from tests._vhost import private_vhost

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

_HOW_TO_START = (
    "run `make services` (scripts/ensure-services.sh), "
    "or `GOVBUS_AUTH_SECRET=unused docker compose -f compose/docker-compose.yml up -d rabbitmq "
    "postgres`"
)


def _amqp_url() -> str:
    return os.environ.get("GOVBUS_TEST_AMQP_URL", DEFAULT_AMQP_URL)


def _pg_url() -> str:
    return os.environ.get("GOVBUS_TEST_PG_URL", DEFAULT_PG_URL)


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _backend_problem(marker: str) -> str | None:
    if marker == "rabbitmq":
        host, port = _host_port(_amqp_url(), 5672)
        if not _answers(host, port):
            return f"RabbitMQ does not answer on {host}:{port} (tests marked 'rabbitmq')"
    elif marker == "postgres":
        host, port = _host_port(_pg_url(), 5432)
        if not _answers(host, port):
            return f"PostgreSQL does not answer on {host}:{port} (tests marked 'postgres')"
    elif marker == "faults" and not (RABBITMQ_BIN / "rabbitmq-server").exists():
        return (
            f"{RABBITMQ_BIN}/rabbitmq-server is missing: tests marked 'faults' start a private "
            "RabbitMQ node from the Debian package rabbitmq-server"
        )
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once per session, before any test runs: every backend the selected tests need answers."""
    needed = {
        marker
        for item in session.items
        for marker in ("rabbitmq", "postgres", "faults")
        if item.get_closest_marker(marker) is not None
    }
    problems = [p for m in sorted(needed) if (p := _backend_problem(m)) is not None]
    if problems:
        pytest.exit("; ".join(problems) + f" -- {_HOW_TO_START}", returncode=3)


@pytest.fixture
def amqp_url() -> str:
    """URL of the shared local broker. Use ``unique`` names on it: other tests share it."""
    return _amqp_url()


@pytest.fixture
def pg_url() -> str:
    """SQLAlchemy URL of the local PostgreSQL test database."""
    return _pg_url()


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, for queues, exchanges and services on shared brokers."""
    return f"t{uuid4().hex[:10]}"


@pytest.fixture
def vhost_url(amqp_url: str) -> Iterator[str]:
    """URL of a vhost of this test's own on the local RabbitMQ, deleted afterwards.

    For tests that run real workers on RabbitMQ (two workers serving one method on a vhost
    would both answer) or read a vhost-wide stream such as `govbus.log`. The module must be
    marked ``rabbitmq``.
    """
    with private_vhost(amqp_url) as url:
        yield url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    finish_vhosts()  # the vhosts of `vhost_url`


@pytest.fixture(scope="session")
def private_rabbit() -> Iterator[PrivateRabbit]:
    """A private RabbitMQ node for the session, free to be stopped, restarted and killed.

    A test that stops the app or kills the node should bring it back
    (``start_app()``/``start()``); ``ensure_app_running()`` does it if unsure.
    """
    node = PrivateRabbit()
    atexit.register(node.stop)  # also on a crash of the session
    try:
        node.start()
        yield node
    finally:
        node.stop()
        atexit.unregister(node.stop)


@pytest.fixture(params=["memory", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs twice: on a private embedded broker and on the local RabbitMQ."""
    if request.param == "rabbitmq":
        request.applymarker(pytest.mark.rabbitmq)
        return _amqp_url()
    return f"memory://t-{uuid4().hex[:8]}"


@pytest.fixture
def memory_url() -> str:
    """A private embedded broker for this test."""
    return f"memory://t-{uuid4().hex[:8]}"


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path, unique: str):
    """Each test using it runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/store.db"
        return
    request.applymarker(pytest.mark.postgres)
    from tests._stores import pg_database

    async with pg_database(unique) as url:
        yield url
