"""The command-line interface: ``python -m nas_core COMMAND ...``.

Owns the argument parser, the JSON/text output convention and the rule that a
user's mistake ends in a one-line message and a non-zero exit code, never a
traceback. Each area of the engine registers its own sub-commands through a
``register_cli(subparsers)`` function listed in :data:`COMMAND_MODULES`; the
handler it sets with ``set_defaults(func=...)`` takes the parsed ``argparse``
namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Any

from nas_core.errors import UserError
from nas_core.redact import install_log_redaction

#: Modules that define ``register_cli(subparsers)``. Order = order in ``--help``.
COMMAND_MODULES = (
    "nas_core.data.cli",
    "nas_core.evaluator_cli",
    "nas_core.metrics.cli",
    "nas_core.store_cli",
    "nas_core.search_cli",
    "nas_core.rungs_cli",
    "nas_core.supernet.cli",
    "nas_core.linas.cli",
)


class CliError(UserError):
    """A user's mistake: printed as ``error: <message>`` and exit code 2."""


def emit(args: argparse.Namespace, payload: Any, text: str | None = None) -> None:
    """Write ``payload`` as JSON when ``--json`` was given, else ``text`` (or the JSON)."""
    if getattr(args, "json", False) or text is None:
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="python -m nas_core",
        description="EquiNAS Studio: search for CNNs that are accurate, fair and small.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        # every area is part of the package: a module that fails to import is a bug, not a skip
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    install_log_redaction()  # a key in a log line (worker logs, -v output) is removed before it is written
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
