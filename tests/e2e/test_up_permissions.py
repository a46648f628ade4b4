"""`govbus up` where it may not write (a container's read-only WORKDIR, a shared directory): one
line naming the file, no traceback, a non-zero exit. Run for real as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e._up import free_port

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """(read-only, writable) for user nobody, under a base it may traverse (pytest's tmp_path
    is private to root)."""
    assert shutil.which("setpriv"), "setpriv (util-linux) is missing"
    base = Path(tempfile.mkdtemp(prefix="govbus-perm-"))
    try:
        base.chmod(0o755)
        readonly, writable = base / "ro", base / "rw"
        readonly.mkdir(mode=0o755)  # root's: nobody may not write it
        writable.mkdir()
        writable.chmod(0o777)
        yield readonly, writable
    finally:
        shutil.rmtree(base)


def up_as_nobody(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    return subprocess.run(
        [*NOBODY, sys.executable, "-m", "govbus", "up", "--http", f"127.0.0.1:{free_port()}"],
        check=False,
        cwd=cwd,
        env={**clean, "GOVBUS_DNS": "off", **env},  # 8600 may be another test's
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_where_it_cannot_write_the_store_names_the_database(dirs):
    readonly, _ = dirs
    run = up_as_nobody(readonly)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "govbus: error: GOVBUS_DB: cannot write the SQLite database ./govbus.db (permission "
        f"denied in {readonly}): run it in a writable directory or set GOVBUS_DB"
    ], run.stderr


def test_up_where_it_cannot_write_the_token_names_the_token_file(dirs):
    readonly, writable = dirs
    run = up_as_nobody(readonly, GOVBUS_DB=f"sqlite+aiosqlite:///{writable}/govbus.db")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"govbus: error: cannot write the admin token ./govbus.token in {readonly}: Permission "
        "denied (govbus up writes it where it runs: run it in a writable directory)"
    ], run.stderr
    assert not (writable / "govbus.db").exists()  # nothing started
