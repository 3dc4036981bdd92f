"""The ``edge-agent`` command. Each verb is one small function; the daemon's own
work lives in the packages, not here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_agent import __version__
from edge_agent.config import load_config
from edge_agent.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

Command = Callable[[argparse.Namespace], int]


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_config(args.path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    print(f"{settings.source}: OK")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Smart-speaker daemon: local wake word, cloud answers, offline fallback.",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    check = verbs.add_parser("check-config", help="validate a config file (exit 2 if invalid)")
    check.add_argument("path", nargs="?", type=Path, default=None,
                       help="config file (default: $EDGE_AGENT_CONFIG, then "
                            "/etc/edge-agent/config.toml)")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    return func(args)
