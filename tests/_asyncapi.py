"""The official AsyncAPI 3.0.0 JSON Schema, from the npm package `@asyncapi/specs`.

Fetched once with `npm pack` into a cache directory outside the repository (never committed);
npm is installed with apt-get when missing (as root), as `scripts/ensure-services.sh` installs
RabbitMQ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "@asyncapi/specs@6.11.1"
MEMBER = "package/schemas/3.0.0.json"
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "govbus-tests"
    / "asyncapi-specs-6.11.1"
)


def asyncapi_3_schema() -> dict[str, Any]:
    """The schema every AsyncAPI 3.0.0 document validates against (JSON Schema draft-07)."""
    target = CACHE / "3.0.0.json"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(
                [_npm(), "pack", PACKAGE, "--pack-destination", scratch, "--silent"],
                cwd=scratch,
                check=True,
                capture_output=True,
                timeout=300,
            )
            tarball = next(Path(scratch).glob("*.tgz"))
            with tarfile.open(tarball) as archive:
                member = archive.extractfile(MEMBER)
                assert member is not None, f"{PACKAGE} has no {MEMBER}"
                partial = target.with_suffix(".partial")
                partial.write_bytes(member.read())
            partial.replace(target)  # whole or absent, even if two runs race
    return json.loads(target.read_text())


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is not None:
        return npm
    if os.geteuid() != 0:
        raise RuntimeError(
            "npm is missing: install it (apt-get install npm) to get @asyncapi/specs"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "npm"], check=True, env=env, timeout=900)
    npm = shutil.which("npm")
    assert npm is not None, "apt-get installed npm, yet it is not on PATH"
    return npm
