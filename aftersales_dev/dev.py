"""`aftersales dev` (what `make run` runs): the whole system locally, with the demo."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aftersales.http import HttpServer
from aftersales.registry import environment, service_names
from aftersales_dev.devenv import local_environment

if TYPE_CHECKING:
    from shared.settings import Settings

RUN_DIR = Path(".run")
# The console's port in development (AFTERSALES_CONSOLE_PORT to move it).
CONSOLE_PORT = 8080


def _say(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)


SERVICES_LOG = "services.log"
# What the buyer would get, as the notifier logs it in development (services/notifier): shown
# on the terminal as the story goes; everything else the services log goes to the file.
BUYER_MESSAGE_PREFIXES = ("✉", "notification deferred until")


class _StoryFilter(logging.Filter):
    """The terminal's share of the logs: the buyer's messages, and whatever is a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return record.name.startswith("aftersales.notifier") and record.getMessage().startswith(
            BUYER_MESSAGE_PREFIXES
        )


class _StoryFormatter(logging.Formatter):
    """A buyer's message as it is; a warning with its details (reason, topic...)."""

    def format(self, record: logging.LogRecord) -> str:
        from shared.crypto import redact
        from shared.logs import TextFormatter

        if record.levelno >= logging.WARNING:
            return "   " + TextFormatter().format(record)
        return redact(f"   {record.getMessage()}")


def dev_logging(run_dir: Path) -> Path:
    """The services' own logs (partition assignments, migrations, every decision) go to a file
    under `run_dir`, as text; the terminal keeps the demo's story, the buyer's messages and
    warnings. Returns the file's path."""
    from shared.logs import TextFormatter

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SERVICES_LOG
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(TextFormatter())
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.addFilter(_StoryFilter())
    to_terminal.setFormatter(_StoryFormatter())
    root = logging.getLogger()
    root.handlers[:] = [to_file, to_terminal]
    return path


def dev_encryption_key(run_dir: Path) -> str:
    """A development key ring for AFTERSALES_ENCRYPTION_KEY, kept in `run_dir` (mode 0600) so
    contacts stored by one `make run` stay readable in the next. Never used in production."""
    from shared.crypto import generate_key

    path = run_dir / "dev-encryption-key"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"dev:{generate_key()}\n")
        _say(f"development encryption key written to {path} (AFTERSALES_ENCRYPTION_KEY)")
    return path.read_text().strip()


def start_console(settings: Settings) -> tuple[HttpServer, asyncio.Task[None]]:
    """The operations console over the local services, on CONSOLE_PORT; its URL and token
    (AFTERSALES_CONSOLE_TOKEN, or one made up now) are printed."""
    from aftersales.console.server import console_config, console_server
    from aftersales.registry import SERVICES

    config = console_config(os.environ, settings, list(SERVICES))
    port = int(os.environ.get("AFTERSALES_CONSOLE_PORT") or CONSOLE_PORT)
    server = console_server(config, port, host="127.0.0.1")
    task = asyncio.create_task(server.serve())
    _say(f"operations console on http://127.0.0.1:{port} (token: {config.token})")
    return server, task


ENV_FILE = "env"
# What a second terminal needs to reach the running system (`aftersales send`, `refunds`...).
SHARED_SETTINGS = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_IDEMPOTENCE", "DATABASE_URL")


def write_env_file(run_dir: Path) -> Path:
    """`export` lines of the settings in use, for `. .run/env` in another shell (mode 0600:
    the local database's URL)."""
    import shlex

    path = run_dir / ENV_FILE
    lines = [
        f"export {name}={shlex.quote(os.environ[name])}\n"
        for name in SHARED_SETTINGS
        if os.environ.get(name)
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(lines)
    return path


async def run_dev(*, exit_after_demo: bool = False) -> int:
    from aftersales.commands.serving import serve
    from aftersales.http import require_free_port
    from aftersales_dev.demo import play
    from shared.migrations import upgrade

    embedded_broker = not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with local_environment(RUN_DIR) as infra:  # creates the directory
        os.environ.update(infra)
        if embedded_broker:
            # Tansu has no idempotent producer; a configured cluster keeps its own setting.
            os.environ.setdefault("KAFKA_IDEMPOTENCE", "false")
        # Development: the notifier writes messages it has no gateway for to the log, and
        # encrypts contact data with a local key kept in .run/ (unless one is given).
        os.environ.setdefault("AFTERSALES_DEV_MODE", "true")
        if not os.environ.get("AFTERSALES_ENCRYPTION_KEY"):
            os.environ["AFTERSALES_ENCRYPTION_KEY"] = dev_encryption_key(RUN_DIR)
        env = environment()
        require_free_port(env.settings.aftersales_http_port)  # before the demo waits on it
        _say(f"broker {env.settings.kafka_bootstrap_servers}, database ready")
        _say(f"for another terminal: `. {write_env_file(RUN_DIR)}` (the broker and database)")
        _say(f"the services' own logs go to {dev_logging(RUN_DIR)} (tail -f it for the details)")
        names = service_names("all")
        _say(f"migrating {', '.join(names)} (each in its own schema)")
        for name in names:
            await asyncio.to_thread(upgrade, name, env.settings.database_url)
        stop = asyncio.Event()
        port = env.settings.aftersales_http_port
        server = asyncio.create_task(serve(names, port=port, until=stop))
        _say(f"services {', '.join(names)} running; health and metrics on http://127.0.0.1:{port}")
        console, console_task = start_console(env.settings)
        await asyncio.sleep(1)
        try:
            result = await play(env.settings.kafka_bootstrap_servers, env.policy)
            if exit_after_demo or result != 0:
                stop.set()
            else:
                _say(
                    "the system keeps running: send your own events (README, `aftersales send`), "
                    "Ctrl-C to stop"
                )
            await server
            return result
        finally:
            stop.set()
            console.should_exit = True
            if not server.done():
                await server
            await console_task
