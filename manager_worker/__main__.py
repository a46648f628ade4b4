"""`python -m manager_worker`: one manager worker until SIGTERM or SIGINT (then exit 0).

Configuration comes from `GOVBUS_URL` (RabbitMQ by default) and `GOVBUS_DB`.
"""

from __future__ import annotations

import functools
import logging
import sys

from bus.errors import BusError, ConfigError
from bus.process import run_process
from bus.settings import load_settings
from manager_worker.process import serve


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        run_process(functools.partial(serve, load_settings()))
    except ConfigError as exc:
        print(f"manager_worker: error: {exc}", file=sys.stderr)
        return 2
    except BusError as exc:
        print(f"manager_worker: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
