"""`aftersales dev` and `demo`: the development tools, a layer above the application."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aftersales.registry import environment
from shared.logs import quiet


def dev(args: argparse.Namespace) -> int:
    run_dev = dev_tool("dev", "run_dev")
    return int(asyncio.run(run_dev(exit_after_demo=args.exit_after_demo)))


def demo(args: argparse.Namespace) -> int:
    play = dev_tool("demo", "play")
    env = environment()
    with quiet("aiokafka"):
        return int(asyncio.run(play(env.settings.kafka_bootstrap_servers, env.policy)))


def dev_tool(module: str, name: str) -> Any:
    """A function of the development tools (aftersales_dev), looked up by name: they stand a
    layer above the application and are not installed in an image."""
    from importlib import import_module

    try:
        return getattr(import_module(f"aftersales_dev.{module}"), name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("aftersales_dev"):
            raise
        raise ValueError(
            f"`{module}` needs the development tools (aftersales_dev), which are not installed "
            "here; in a checkout run `make install`"
        ) from None
