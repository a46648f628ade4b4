"""`python -m manager_worker`: one manager worker, configured by `GOVBUS_*` variables."""

from __future__ import annotations

import asyncio
import logging
import sys

from bus.errors import BusError, ConfigError
from bus.settings import load_settings
from manager_worker.process import serve


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        settings = load_settings()
        asyncio.run(serve(settings))
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
