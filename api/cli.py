"""``kontena-master``: one console script, one subcommand per process role."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from core.config import Settings, load_settings
from core.vault import VaultError

log = logging.getLogger("kontena")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kontena-master", description="Kontena-compatible container control plane."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run everything in one process on SQLite (one machine)")
    up.add_argument("--data-dir", help="directory for the database and keys (default ./data)")
    up.add_argument("--port", type=int, help="HTTP port (default 8080)")
    up.add_argument("--host", help="bind address (default 127.0.0.1)")
    up.add_argument(
        "--no-agent",
        action="store_true",
        help="do not start a local agent even when a Docker Engine is reachable",
    )

    api = sub.add_parser("api", help="serve the REST API (needs PostgreSQL and Redis)")
    api.add_argument("--host", help="bind address (default KONTENA_HOST)")
    api.add_argument("--port", type=int, help="HTTP port (default KONTENA_PORT)")

    worker = sub.add_parser("worker", help="run Dramatiq workers for every mutating action")
    worker.add_argument("--queues", nargs="*", help="queues to consume (default: all)")
    worker.add_argument("--processes", type=int, help="worker processes")
    worker.add_argument("--threads", type=int, help="threads per process")

    sub.add_parser("scheduler", help="send periodic jobs while holding the leader lease")
    sub.add_parser("migrate", help="apply database migrations")

    token = sub.add_parser("token", help="manage admin access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="print a new admin access token")
    create.add_argument(
        "--expires-in", type=int, default=0, help="seconds until it expires (0 = never)"
    )
    create.add_argument("--token", action="store_true", help="print only the access token")
    create.add_argument("--description", default="created by kontena-master token create")

    vault = sub.add_parser("vault", help="manage the vault that encrypts secrets at rest")
    vault_sub = vault.add_subparsers(dest="vault_command", required=True, metavar="ACTION")
    rotate = vault_sub.add_parser(
        "rotate", help="re-wrap every vault value under KONTENA_VAULT_KEY (master keeps serving)"
    )
    rotate.add_argument("--batch-size", type=int, default=200, help="rows per transaction")
    return parser


def _configure_logging(settings: Settings, command: str) -> None:
    from core.logging_setup import configure

    # JSON lines for the server roles (log shippers parse them); a console for `up` and tools.
    default = "console" if command in ("up", "migrate", "token", "vault") else "json"
    configure(settings.log_level, settings.log_format or default)
    # Alembic announces every plugin at INFO; migrations report their own progress.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _require_redis(settings: Settings, role: str) -> None:
    if not settings.redis_url:
        raise SystemExit(
            f"kontena-master {role}: KONTENA_REDIS_URL is not set. Distributed roles share "
            "work through Redis; for one machine use `kontena-master up`."
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kontena-master`` console script."""
    args = _parser().parse_args(argv)
    overrides = {k: getattr(args, k, None) for k in ("data_dir", "port", "host")}
    settings = load_settings(**overrides)
    _configure_logging(settings, args.command)
    try:
        return _dispatch(args, settings)
    except VaultError as exc:
        print(f"kontena-master: vault error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        from api.embedded import run_embedded

        return run_embedded(settings, local_agent=not args.no_agent)
    if args.command == "migrate":
        from models.migrate import upgrade

        upgrade(settings.resolved_database_url)
        print("database migrated")
        return 0
    if args.command == "token":
        return _token_create(settings, args.expires_in, args.description, only_token=args.token)
    if args.command == "vault":
        from api.vault_command import run_vault_rotate

        return run_vault_rotate(settings, max(1, args.batch_size))
    _require_redis(settings, args.command)
    if args.command == "api":
        from api.serve import serve_api

        return serve_api(settings)
    if args.command == "worker":
        from workers.run import run_worker

        return run_worker(
            settings,
            queues=args.queues or None,
            processes=args.processes or settings.worker_processes,
            threads=args.threads or settings.worker_threads,
        )
    if args.command == "scheduler":
        from scheduler.run import run_scheduler_process

        return run_scheduler_process(settings)
    raise AssertionError(args.command)


def _token_create(
    settings: Settings, expires_in: int, description: str, *, only_token: bool
) -> int:
    from core.admin_tokens import create_admin_token
    from models.db import Database

    async def create() -> dict[str, object]:
        db = Database(settings.resolved_database_url)
        try:
            issued = await create_admin_token(db, expires_in, description)
        finally:
            await db.dispose()
        return {
            "id": issued.token.id,
            "access_token": issued.access_token,
            "refresh_token": issued.refresh_token,
            "expires_in": expires_in or None,
        }

    result = asyncio.run(create())
    print(result["access_token"] if only_token else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
