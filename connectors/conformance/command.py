"""`childlookup connector check`: write the conformance dataset, or run the kit and exit
non-zero when any check fails."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from connectors.conformance.dataset import write_dataset
from connectors.conformance.options import add_arguments, options_from_args
from connectors.conformance.suite import run_conformance


def conformance_command(args: argparse.Namespace) -> int:
    """Run what `add_arguments` parsed: 0 when every check passed (or the dataset was written),
    1 when any failed. Raises ValueError or OSError for a run that cannot be set up."""
    if args.write_dataset is not None:
        agencies = None if args.agency is None else [args.agency]
        for path in write_dataset(
            args.write_dataset, agencies, fields=args.fields, flags=args.flags
        ):
            print(f"wrote {path}")
        return 0
    return run_conformance(options_from_args(args)).exit_code


def build_parser(prog: str = "python -m connectors.conformance") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the connector protocol's conformance suite against a connector."
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return conformance_command(args)
    except (ValueError, OSError) as error:
        print(f"conformance: {error}", file=sys.stderr)
        return 2
