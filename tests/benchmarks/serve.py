"""Serve one benchmark target with uvicorn: the real API, or a bare Litestar JSON endpoint."""

from __future__ import annotations

import sys

import uvicorn
from litestar import Litestar, get


@get("/bare")
async def bare() -> dict[str, str]:
    """The baseline: no database, no auth."""
    return {"message": "pong"}


def main() -> None:
    """``python -m tests.benchmarks.serve {bare|api} PORT``."""
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "bare":
        app = Litestar([bare])
    else:
        from api.app import create_app
        from core.config import load_settings
        from core.runtime import build_runtime
        from workers.broker import DramatiqSender, build_broker

        settings = load_settings()
        app = create_app(build_runtime(settings, DramatiqSender(build_broker(settings))))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
