"""Two revisions of our stack, each beside the same peer, in alternated runs of bench.compare.

This 2-core VM drifts by up to 2x within an hour: one run of old code and one of new say nothing
about a change worth 10%. bench.compare already cancels most of the drift within a run (each
round's ratio to Hive Gateway is taken between two phases run back to back); this takes the same
ratios for two revisions of our code in turn - base, this, this, base, base, this, ... - so that
neither always runs on the hour the other has just had, and prints each figure's per-run medians
side by side. It is how a change to the lookup path is judged before it is kept (issue #12).

    .venv/bin/python -m bench.alternate 40be6ee --pairs 2 -- --latency-ms 0 --requests 300

`base` is any git revision, checked out into a temporary worktree; `--this` defaults to the working
tree as it is, uncommitted changes included. Both run on this checkout's virtualenv, so two
revisions needing different packages cannot be compared this way. Hive Gateway's packages are
taken from this checkout's `bench/peer/node_modules` when the base pins the same versions, and
installed into its worktree with `npm ci` when it does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER = Path("bench") / "peer"
FIGURES = ("p50", "lookups_per_s", "gateway_cpu", "stack_cpu")
MODES = ("sequential", "concurrent")


def run_order(pairs: int) -> list[str]:
    """Which revision runs when: pairs of (base, this), the pair's order flipping each time, so
    the sequence is base, this, this, base, base, this, ..."""
    order: list[str] = []
    for pair in range(pairs):
        order += ["base", "this"] if pair % 2 == 0 else ["this", "base"]
    return order


@contextlib.contextmanager
def worktree(repo: Path, revision: str, into: Path) -> Iterator[Path]:
    """`revision` of `repo` checked out at `into`, with the peer's packages ready; removed (and
    unregistered from `repo`) on exit."""
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--quiet", "--detach", str(into), revision],
        check=True,
    )
    try:
        _peer_packages(repo, into)
        yield into
    finally:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(into)], check=True
        )


def _peer_packages(repo: Path, tree: Path) -> None:
    """Link the checkout's node_modules into `tree` when both pin the same packages; else, if
    `tree` has a peer at all, install its own."""
    lock = tree / PEER / "package-lock.json"
    if not lock.exists():
        return
    ours = repo / PEER / "node_modules"
    if ours.is_dir() and (repo / PEER / "package-lock.json").read_bytes() == lock.read_bytes():
        (tree / PEER / "node_modules").symlink_to(ours, target_is_directory=True)
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install the base revision's peer")
    subprocess.run([npm, "ci", "--prefix", str(tree / PEER)], check=True)


def run_compare(tree: Path, compare_args: Sequence[str], out: Path) -> dict[str, Any]:
    """One bench.compare run of the code in `tree` (its modules first on the path, in this
    process's interpreter); its report."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "-m", "bench.compare", *compare_args, "--out", str(out)],
        cwd=tree,
        env=env,
        check=True,
    )
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def run_medians(report: Mapping[str, Any]) -> dict[str, float]:
    """Each figure's median ratio to the peer in one run, keyed `<latency>ms/<mode>/<figure>`."""
    medians: dict[str, float] = {}
    for run in report["runs"]:
        for mode in MODES:
            for figure in FIGURES:
                key = f"{run['connector_latency_ms']:g}ms/{mode}/{figure}"
                medians[key] = run["ours_to_peer"][mode][figure]["median"]
    return medians


def side_by_side(runs: Sequence[tuple[str, Mapping[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per figure, each revision's per-run medians in the order they ran, and their median."""
    table: dict[str, dict[str, Any]] = {}
    for revision, medians in runs:
        for key, value in medians.items():
            table.setdefault(key, {}).setdefault(revision, {"runs": []})["runs"].append(value)
    for revisions in table.values():
        for figures in revisions.values():
            figures["median"] = round(statistics.median(figures["runs"]), 3)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="After --: bench.compare's own arguments."
    )
    parser.add_argument("base", help="the git revision to measure against")
    parser.add_argument(
        "--this", help="a git revision to measure (default: the working tree as it is)"
    )
    parser.add_argument("--pairs", type=int, default=2, help="runs of each revision")
    parser.add_argument("--out", type=Path, default=RESULTS / "alternate.json")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    compare_args = argv[split + 1 :]
    if args.pairs < 1:
        parser.error("--pairs is at least 1")
    if "--out" in compare_args:
        parser.error("bench.compare's --out is chosen here: pass --out before --")
    started = time.monotonic()
    runs: list[tuple[str, dict[str, float]]] = []
    with (
        tempfile.TemporaryDirectory(prefix="childlookup-alternate-") as tmp,
        contextlib.ExitStack() as trees,
    ):
        work = Path(tmp)
        tree = {
            "base": trees.enter_context(worktree(ROOT, args.base, work / "base")),
            "this": ROOT
            if args.this is None
            else trees.enter_context(worktree(ROOT, args.this, work / "this")),
        }
        for number, revision in enumerate(run_order(args.pairs)):
            print(f"run {number + 1}: {revision}", flush=True)
            report = run_compare(tree[revision], compare_args, work / f"{number}.json")
            runs.append((revision, run_medians(report)))
    table = side_by_side(runs)
    write_report(
        "alternate",
        args.out,
        base=args.base,
        this=args.this or "working tree",
        compare_args=compare_args,
        order=[revision for revision, _ in runs],
        elapsed_s=round(time.monotonic() - started, 1),
        ours_to_peer=table,
    )
    _print(table, args.base, args.this or "working tree")
    print(f"report: {args.out}")


def _print(table: Mapping[str, Mapping[str, Any]], base: str, this: str) -> None:
    print(f"ours / Hive Gateway, each run's median ratio; base = {base}, this = {this}")
    width = max(len(key) for key in table)
    for key, revisions in table.items():
        cells = "   ".join(
            f"{name} {', '.join(f'{v:.2f}' for v in figures['runs'])}"
            f" (median {figures['median']:.2f})"
            for name, figures in revisions.items()
        )
        print(f"{key:<{width}}  {cells}")


if __name__ == "__main__":
    main()
