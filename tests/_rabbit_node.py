"""A private, throw-away RabbitMQ node for fault tests.

Fault tests stop, restart and kill a broker; they must never do that to the shared node
(``rabbit@localhost`` on 5672) that other tests and engineers use. ``PrivateRabbit`` starts a
second node from the same Debian package, with everything of its own in a temporary directory:

- node name ``govbus-test-<pid>@localhost`` and its own AMQP, distribution and epmd ports;
- ``HOME`` (hence the Erlang cookie, which we write ourselves before the node starts, so the node
  and ``rabbitmqctl`` always agree on it), mnesia, logs, pid file, config and plugins files;
- ``RABBITMQ_CONF_ENV_FILE`` pointing at an empty file, so ``/etc/rabbitmq/rabbitmq-env.conf``
  (which sets ``NODENAME=rabbit@localhost``) is never read.

It calls ``/usr/lib/rabbitmq/bin/*`` directly: the ``/usr/sbin`` wrappers ``su`` to the
``rabbitmq`` user when run as root, which resets ``HOME`` and loses the private environment.

Every process the node spawns (beam, epmd, erl_child_setup, inet_gethost) inherits the marker
variable ``GOVBUS_TEST_RABBIT_DIR``; ``stop()`` kills exactly those, never anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from tests._wait import wait_until

RABBITMQ_BIN = Path(os.environ.get("GOVBUS_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
MARKER = "GOVBUS_TEST_RABBIT_DIR"
DIR_PREFIX = "govbus-rabbit-"

# Ports are picked below the kernel's ephemeral range (32768+ on Linux), so no outgoing
# connection can grab our AMQP port while the app is stopped. The distribution port is picked
# from the top of that band: RabbitMQ's CLI tools bind "dist port + 10000 .. + 10010" for their
# own distribution listener, and that window must not hit one of our ports (with the defaults
# it is 35672-35682: a node on AMQP port 35672 fails to restart with eaddrinuse).
_LOW_BAND = (10000, 22000)
_DIST_BAND = (23000, 32000)
# Erlang distribution on loopback only, like the main node.
_ERL_ARGS = "-kernel inet_dist_use_interface {127,0,0,1}"


class RabbitNodeError(RuntimeError):
    """The private node could not be started, stopped or queried."""


def _port_is_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, ""), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, port))
        except OSError as exc:
            if family == socket.AF_INET6 and not socket.has_ipv6:
                continue
            if family == socket.AF_INET6 and exc.errno in (97, 99):  # no IPv6 on this host
                continue
            return False
    return True


def _pick_port(band: tuple[int, int], taken: set[int]) -> int:
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(*band)
        if port in taken or any(abs(port - t) <= 10 for t in taken):
            continue
        if _port_is_free(port):
            taken.add(port)
            return port
    raise RabbitNodeError(f"no free TCP port in {band}")


def _answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (nobody reaps orphans in some containers) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _marked_pids(marker_value: str) -> list[int]:
    """Pids of processes whose environment carries ``MARKER=marker_value``."""
    needle = f"{MARKER}={marker_value}".encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _kill_marked(
    marker_value: str,
    grace: float = 3.0,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGKILL),
) -> None:
    pids = [p for p in _marked_pids(marker_value) if _alive(p)]
    for sig in signals:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        # Still alive after the grace: the next, harder signal.
        with contextlib.suppress(AssertionError):
            wait_until(lambda pids=pids: not any(_alive(p) for p in pids), timeout=grace)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


class PrivateRabbit:
    """A private RabbitMQ node (Debian package) for tests that restart or kill the broker."""

    def __init__(
        self,
        *,
        startup_timeout: float = 60.0,
        keep_dir: bool | None = None,
        extra_config: Mapping[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        cookie: str | None = None,
        epmd_port: int | None = None,
        taken: set[int] | None = None,
    ) -> None:
        """``extra_config``: more ``rabbitmq.conf`` lines (key = value). ``tls``: (CA
        certificate, server certificate, server key) PEM files for an AMQPS listener on
        ``tls_port`` (loopback) that wants a client certificate signed by that CA.
        ``cookie``, ``epmd_port``, ``taken``: what the nodes of one cluster share (the Erlang
        cookie, an epmd they all register with, the ports already picked); see
        ``tests/_rabbit_cluster.py``."""
        self.startup_timeout = startup_timeout
        self.keep_dir = (
            keep_dir if keep_dir is not None else bool(os.environ.get("GOVBUS_TEST_KEEP_RABBIT"))
        )
        self.nodename = f"govbus-test-{os.getpid()}-{secrets.token_hex(2)}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        taken = taken if taken is not None else set()
        taken |= {5672, 25672, 4369}
        self.cookie = cookie or secrets.token_hex(16).upper()
        self.port = _pick_port(_LOW_BAND, taken)
        self.epmd_port = epmd_port or _pick_port(_LOW_BAND, taken)
        self.dist_port = _pick_port(_DIST_BAND, taken)
        self.tls_port = _pick_port(_LOW_BAND, taken) if tls is not None else None
        self.extra_config = dict(extra_config or {})
        if tls is not None:
            cacert, cert, key = tls
            self.extra_config.update(
                {
                    "listeners.ssl.default": f"127.0.0.1:{self.tls_port}",
                    "ssl_options.cacertfile": str(cacert),
                    "ssl_options.certfile": str(cert),
                    "ssl_options.keyfile": str(key),
                    "ssl_options.verify": "verify_peer",
                    "ssl_options.fail_if_no_peer_cert": "true",
                }
            )
        self.startup_seconds: float | None = None
        self._started = False
        self._stopped = False
        self._write_files()

    # --- environment ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def tls_url(self, **query: str) -> str:
        """The AMQPS listener's URL (``tls`` given), with ``query`` (cafile=..., ...)."""
        if self.tls_port is None:
            raise RabbitNodeError("this node has no TLS listener: pass tls=(ca, cert, key)")
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"amqps://guest:guest@127.0.0.1:{self.tls_port}/" + (f"?{params}" if params else "")

    @property
    def pid_file(self) -> Path:
        return self.dir / "rabbit.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "log" / f"{self.nodename}.log"

    def env(self) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RABBITMQ_", "ERL_", "CONF_ENV")) and k != "HOME"
        }
        d = self.dir
        base.update(
            {
                MARKER: str(d),
                "HOME": str(d),
                "RABBITMQ_NODENAME": self.nodename,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_PID_FILE": str(self.pid_file),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
                "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
                "RABBITMQ_SCHEMA_DIR": str(d / "schema"),
                "RABBITMQ_GENERATED_CONFIG_DIR": str(d / "config"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": _ERL_ARGS,
            }
        )
        return base

    def _write_files(self) -> None:
        d = self.dir
        for sub in ("mnesia", "log", "schema", "config"):
            (d / sub).mkdir(exist_ok=True)
        (d / "owner.pid").write_text(f"{os.getpid()}\n")
        # An Erlang term: "[]" alone is a syntax error and the node refuses to boot.
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq-env.conf").write_text("")
        (d / "rabbitmq.conf").write_text(
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = info\n"
            "disk_free_limit.absolute = 1MB\n"
            + "".join(f"{key} = {value}\n" for key, value in self.extra_config.items())
        )
        cookie = d / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Boot the node (or boot it again after ``kill()``) and wait until it serves AMQP."""
        if self._stopped:
            raise RabbitNodeError("this PrivateRabbit was stopped; make a new one")
        reap_stale()
        server = RABBITMQ_BIN / "rabbitmq-server"
        if not server.exists():
            raise RabbitNodeError(
                f"{server} not found: install the Debian package rabbitmq-server "
                "(scripts/ensure-services.sh does it)"
            )
        began = time.monotonic()
        # Output must go to a file: the detached beam inherits the descriptors, and with a pipe
        # subprocess.run would wait for an EOF that comes only when the node exits.
        with (self.dir / "server.out").open("ab") as out:
            subprocess.run(
                [str(server), "-detached"],
                env=self.env(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=30,
            )
        self._started = True
        deadline = began + self.startup_timeout
        self._wait_port(deadline, boot=True)
        self.rabbitmqctl(
            "await_startup", "--timeout", str(max(1, int(deadline - time.monotonic())))
        )
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop the node and everything it spawned; remove its directory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._started and self._beam_pid() is not None:
                with contextlib.suppress(RabbitNodeError, subprocess.TimeoutExpired):
                    self.rabbitmqctl("stop", str(self.pid_file), timeout=30)
        finally:
            _kill_marked(str(self.dir))
            if not self.keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def shutdown(self) -> None:
        """Stop the whole VM gracefully, keeping its data; ``start()`` boots it again."""
        if self._beam_pid() is not None:
            self.rabbitmqctl("shutdown", timeout=self.startup_timeout)
        _kill_marked(str(self.dir))  # epmd and helpers: start() brings its own
        self.pid_file.unlink(missing_ok=True)

    def restart(self) -> None:
        """A full, graceful broker restart (the VM too); durable state survives."""
        self.shutdown()
        self.start()

    def kill(self) -> None:
        """Crash the node (SIGKILL its VM and helpers); ``start()`` boots it again on its data.

        Caveat seen on RabbitMQ 3.10: a quorum queue declared shortly (seconds) before the kill
        may come back without a leader, forever, because Ra's name registry (a DETS file) was
        not synced yet. Use ``restart()``/``restart_app()`` for "the broker restarts" tests.
        """
        _kill_marked(str(self.dir), grace=5.0, signals=(signal.SIGKILL,))
        self.pid_file.unlink(missing_ok=True)

    def stop_app(self) -> None:
        """``rabbitmqctl stop_app``: the broker closes every connection and stops listening."""
        self.rabbitmqctl("stop_app")
        wait_until(
            lambda: not _answers(self.port),
            timeout=self.startup_timeout,
            what=f"node {self.nodename} to stop serving AMQP",
        )

    def start_app(self) -> None:
        """``rabbitmqctl start_app`` and wait until AMQP is served again."""
        deadline = time.monotonic() + self.startup_timeout
        self.rabbitmqctl("start_app", timeout=self.startup_timeout)
        self._wait_port(deadline, boot=False)
        self.rabbitmqctl("await_startup", "--timeout", "30")

    def restart_app(self) -> None:
        self.stop_app()
        self.start_app()

    def ensure_app_running(self) -> None:
        """Start the app again if a test left it stopped (the node itself is session-wide)."""
        if not _answers(self.port):
            self.start_app()

    def close_all_connections(self, reason: str = "govbus fault test") -> None:
        self.rabbitmqctl("close_all_connections", reason)

    def import_definitions(self, path: Path, timeout: float = 30.0) -> None:
        """Import a definitions file (users, permissions, topic permissions, ...) and wait
        until its users and topic permissions are in place (the import is asynchronous)."""
        import json

        wanted = json.loads(path.read_text())
        users = {u["name"] for u in wanted.get("users", [])}
        topics = len(wanted.get("topic_permissions", []))
        self.rabbitmqctl("import_definitions", str(path))

        def imported() -> bool:
            listed = self.rabbitmqctl("-q", "list_users", "--no-table-headers")
            have = {line.split("\t", 1)[0] for line in listed.splitlines() if line.strip()}
            granted = self.rabbitmqctl("-q", "list_topic_permissions", "--no-table-headers")
            topic_lines = [ln for ln in granted.splitlines() if ln.strip()]
            return users <= have and len(topic_lines) >= topics

        try:
            wait_until(imported, timeout=timeout, interval=0.1)
        except AssertionError:
            raise RabbitNodeError(f"importing {path} did not finish within {timeout:g} s") from None

    def list_queues(self, vhost: str = "/") -> list[str]:
        """Names of the queues in ``vhost``."""
        out = self.rabbitmqctl("-q", "list_queues", "--no-table-headers", "-p", vhost, "name")
        return [line for line in out.splitlines() if line.strip()]

    def consumer_counts(self, vhost: str = "/") -> dict[str, int]:
        """``{queue name: number of consumers}`` for queues that have consumers.

        Counted from ``rabbitmqctl list_consumers``: the ``consumers`` column of
        ``list_queues`` stays 0 for quorum queues on RabbitMQ 3.10.
        """
        out = self.rabbitmqctl(
            "-q", "list_consumers", "--no-table-headers", "-p", vhost, "queue_name", "consumer_tag"
        )
        counts: dict[str, int] = {}
        for line in out.splitlines():
            if not line.strip():
                continue
            queue = line.rsplit("\t", 1)[0]
            counts[queue] = counts.get(queue, 0) + 1
        return counts

    def queue_consumers(self, queue: str, vhost: str = "/") -> int:
        """Number of consumers on ``queue`` (0 if it has none or does not exist)."""
        return self.consumer_counts(vhost).get(queue, 0)

    list_consumers = queue_consumers

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> str:
        cmd = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, *args]
        proc = subprocess.run(
            cmd,
            env=self.env(),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RabbitNodeError(
                f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[:2000]}"
            )
        return proc.stdout

    # --- async variants: run the blocking CLI off the event loop ----------------------------

    async def astop_app(self) -> None:
        await asyncio.to_thread(self.stop_app)

    async def astart_app(self) -> None:
        await asyncio.to_thread(self.start_app)

    async def arestart_app(self) -> None:
        await asyncio.to_thread(self.restart_app)

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)

    async def ashutdown(self) -> None:
        await asyncio.to_thread(self.shutdown)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def aclose_all_connections(self, reason: str = "govbus fault test") -> None:
        await asyncio.to_thread(self.close_all_connections, reason)

    async def aqueue_consumers(self, queue: str, vhost: str = "/") -> int:
        return await asyncio.to_thread(self.queue_consumers, queue, vhost)

    # --- helpers --------------------------------------------------------------------------

    def _beam_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _wait_port(self, deadline: float, *, boot: bool) -> None:
        began = time.monotonic()

        def serving() -> bool:
            if _answers(self.port, timeout=0.2):
                return True
            # The pid file is written early in boot; if the VM is gone, say why at once.
            waited = time.monotonic() - began
            if boot and waited > 2 and self._beam_pid() is None and not _marked_beam(self.dir):
                raise RabbitNodeError(f"node {self.nodename} died while booting\n{self._tail()}")
            return False

        try:
            wait_until(serving, timeout=max(deadline - began, 0.0))
        except AssertionError:
            raise RabbitNodeError(
                f"node {self.nodename} did not serve AMQP on 127.0.0.1:{self.port} in time\n"
                f"{self._tail()}"
            ) from None

    def _tail(self, lines: int = 40) -> str:
        chunks = []
        for path in (self.dir / "server.out", self.log_file):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(chunks)

    def __repr__(self) -> str:
        return f"PrivateRabbit({self.nodename!r}, port={self.port}, dir={str(self.dir)!r})"


def _marked_beam(directory: Path) -> bool:
    for pid in _marked_pids(str(directory)):
        with contextlib.suppress(OSError):
            if _alive(pid) and b"beam" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                return True
    return False


def reap_stale() -> None:
    """Stop private nodes left behind by test sessions that died without cleaning up."""
    for d in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            owner = int((d / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _alive(owner):
            continue
        _kill_marked(str(d), grace=1.0)
        shutil.rmtree(d, ignore_errors=True)
