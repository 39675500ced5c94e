"""`childlookup synth --national`: the options it adds to `synth`, and what it runs."""

from __future__ import annotations

import argparse
import time

from connectors.synthetic.national.files import write_national
from connectors.synthetic.national.population import generate_national


def add_national_arguments(synth: argparse.ArgumentParser) -> None:
    synth.add_argument(
        "--national",
        action="store_true",
        help="a national population: many authorities, practices and schools (see --out layout "
        "in connectors.synthetic.national.files)",
    )
    synth.add_argument("--local-authorities", type=int, default=153)
    synth.add_argument("--practices", type=int, default=500)
    synth.add_argument("--schools", type=int, default=2000)


def synth_national(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    population = generate_national(
        args.seed,
        args.children,
        local_authorities=args.local_authorities,
        practices=args.practices,
        schools=args.schools,
    )
    summary = write_national(population, args.out)
    elapsed = time.perf_counter() - started
    print(f"wrote national population to {args.out} in {elapsed:.1f}s\n{summary}")
    return 0
