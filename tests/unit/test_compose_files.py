"""The compose deployment, checked statically (no Docker engine here): the edge's healthcheck,
the required secret, a non-root image in a writable directory, and a build context that keeps
private and bulky files out."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of compose/Dockerfile, continuation lines joined."""
    text = (ROOT / "compose" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context: the last pattern matching the
    path or one of its parent directories decides (`!` lets it back in). As in moby's
    patternmatcher: `**` spans directories, `*` and `?` stay within one."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for raw in patterns:
        keep = raw.startswith("!")
        pattern = raw[1:] if keep else raw
        regex = _regex(pattern.strip("/"))
        if any(re.fullmatch(regex, c) for c in candidates):
            out = not keep
    return out


def _regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] in "*?":
            out.append("[^/]*" if pattern[i] == "*" else "[^/]")
            i += 1
        elif pattern[i] == "[":  # a character class, e.g. *.py[co]
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def test_the_edge_has_a_readiness_healthcheck_without_curl():
    check = COMPOSE["services"]["edge"]["healthcheck"]
    test = check["test"]
    command = " ".join(test[1:]) if isinstance(test, list) else test
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "/readyz" in command and "127.0.0.1:8080" in command
    assert command.split()[0] == "python" and "curl" not in command  # python:3.11-slim
    # The command is valid Python.
    compile(test[-1], "healthcheck", "exec")


def test_the_edge_secret_is_required_at_config_time():
    secret = COMPOSE["services"]["edge"]["environment"]["GOVBUS_AUTH_SECRET"]
    match = re.fullmatch(r"\$\{GOVBUS_AUTH_SECRET:\?(.+)\}", secret)
    assert match, secret  # `:?`: unset or empty stops compose with the message
    assert "compose/.env" in match.group(1)


def test_the_image_runs_as_a_non_root_user_in_a_directory_it_owns():
    steps = dockerfile()
    user = [args for op, args in steps if op == "USER"][-1]
    workdir = [args for op, args in steps if op == "WORKDIR"][-1]
    uid = user.split(":")[0]
    assert uid not in ("root", "0"), user
    # Some RUN gives that directory to that user.
    runs = " && ".join(args for op, args in steps if op == "RUN")
    commands = [shlex.split(c) for c in re.split(r"&&|;", runs)]
    assert any(c[:1] == ["chown"] and c[1].split(":")[0] == uid and workdir in c for c in commands)
    assert any(
        c[:1] == ["useradd"] and "--uid" in c and c[c.index("--uid") + 1] == uid for c in commands
    )
    assert COMPOSE["x-govbus"]["build"] == {"context": "..", "dockerfile": "compose/Dockerfile"}


def test_the_build_context_leaves_out_private_and_bulky_files():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        "govbus.db",
        "govbus.db-wal",
        "govbus.token",
        "compose/.env",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".pytest_cache/v/x",
        ".rabbitmq-test/node/x",
        "tests/artifacts/least_privilege.md",
        "tests/unit/test_compose_files.py",
        "benchmarks/results.json",
        "govbus.egg-info/PKG-INFO",
        "bus/__pycache__/client.cpython-311.pyc",
    ]:
        assert ignored(path, patterns), f"{path} reaches the build context"
    # ... and everything the Dockerfile copies does reach it.
    for op, args in dockerfile():
        if op == "COPY":
            for source in args.split()[:-1]:
                assert not ignored(source, patterns), f"COPY {source}: left out of the context"
                assert not ignored(f"{source}/x.py", patterns) or not (ROOT / source).is_dir()


# --- the three-node cluster option (compose/cluster.yml) ----------------------------------------

CLUSTER = yaml.safe_load((ROOT / "compose" / "cluster.yml").read_text())


def test_the_cluster_file_makes_three_nodes_of_one_cluster_and_gives_components_all_of_them():
    from bus.settings import load_settings
    from bus.transport._amqp_url import split_nodes

    conf = (ROOT / "compose" / "rabbitmq" / "cluster.conf").read_text()
    listed = set(re.findall(r"classic_config\.nodes\.\d+ = rabbit@(\S+)", conf))
    services = {**COMPOSE["services"], **CLUSTER["services"]}
    nodes = {"rabbitmq", "rabbitmq-2", "rabbitmq-3"}
    # the node names (rabbit@<hostname>) are what cluster.conf lists
    hostnames = {services[n].get("hostname") or COMPOSE["services"][n]["hostname"] for n in nodes}
    assert listed == hostnames == nodes
    cookies = {
        CLUSTER["services"][n].get("environment", {}).get("RABBITMQ_ERLANG_COOKIE")
        or CLUSTER["x-rabbit-node"]["environment"]["RABBITMQ_ERLANG_COOKIE"]
        for n in nodes
    }
    assert len(cookies) == 1  # one cookie, or the nodes cannot talk
    for component in ("discovery", "discovery-b", "manager", "edge"):
        url = CLUSTER["services"][component]["environment"]["GOVBUS_URL"]
        settings = load_settings(url=url)
        hosts = [
            n.split("@", 1)[1].split(":")[0] for n in split_nodes(settings.bus_url(embedded=False))
        ]
        assert sorted(hosts) == sorted(nodes), component
        user = COMPOSE["services"][component]["environment"]["GOVBUS_URL"].split(":")[1]
        assert all(n.startswith(f"amqp:{user}:") for n in url.split(",")), component
        assert set(CLUSTER["services"][component]["depends_on"]) == nodes - {"rabbitmq"}
