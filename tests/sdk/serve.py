"""Run the sandlot server app under uvicorn: ``python -m tests.sdk.serve DATA_DIR PORT``.

The SDK tests start this in a subprocess rather than a thread: the runc driver makes its process
the subreaper of every sandbox and reaps orphans, which must not happen inside the pytest
process (the CLI tests run subprocesses of their own, and tests/conftest.py's driver is already
a subreaper there). Settings come from the environment the fixture prepared (instance, subnet).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import uvicorn

from sandlot.api.app import create_app
from sandlot.config import Settings


def main() -> None:
    data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    settings = Settings.from_env(server={"data_dir": data_dir, "host": "127.0.0.1", "port": port}, data_dir=data_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
