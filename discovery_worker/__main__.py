"""`python -m discovery_worker`: one discovery worker until SIGTERM or SIGINT (then exit 0).

Configuration comes from `GOVBUS_URL` (RabbitMQ by default) and `GOVBUS_DB`.
"""

from __future__ import annotations

import functools
import logging
import sys

from bus.errors import BusError
from bus.process import run_process
from bus.settings import load_settings

from .process import serve


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        run_process(functools.partial(serve, load_settings()))
    except BusError as exc:  # includes ConfigError: a bad GOVBUS_* value
        print(f"discovery_worker: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
