"""`aftersales policy`, `asyncapi` and `openapi`: the policy file and the documents checked."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from shared.policy import load_policy


def check_policy(args: argparse.Namespace) -> int:
    path = args.file or os.environ.get("AFTERSALES_POLICY_FILE")
    policy = load_policy(path)
    print(f"policy {path or '(defaults)'} is valid:")
    print(policy.model_dump_json(indent=2))
    return 0


def asyncapi(args: argparse.Namespace) -> int:
    from aftersales.asyncapi import write_or_check

    return write_documents(args, "AsyncAPI", "asyncapi", write_or_check)


def openapi(args: argparse.Namespace) -> int:
    from aftersales.openapi import write_or_check

    return write_documents(args, "OpenAPI", "openapi", write_or_check)


def write_documents(
    args: argparse.Namespace, kind: str, command: str, write_or_check: Callable[..., list[str]]
) -> int:
    """Write the documents of `aftersales <command>`, or (--check) fail when they are stale."""
    from pathlib import Path

    stale = write_or_check(Path(args.dir), check=args.check)
    if args.check and stale:
        print(
            f"{kind} documents are stale (run `.venv/bin/aftersales {command}`): "
            + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    print(f"{kind} documents {'up to date' if not stale else 'written: ' + ', '.join(stale)}")
    return 0
