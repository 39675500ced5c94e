"""The alternating benchmark (bench.alternate): which revision runs when, how each run's ratios are
read and set side by side, and the base revision's worktree - checked out, given the peer's
packages, and gone afterwards. No stack, no timing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.alternate import PEER, run_medians, run_order, side_by_side, worktree
from bench.compare import _paired


def test_revisions_take_turns_going_first():
    assert run_order(1) == ["base", "this"]
    assert run_order(3) == ["base", "this", "this", "base", "base", "this"]


def _phase(p50_ms: float, wall_s: float, gateway: int) -> dict[str, Any]:
    return {
        "latencies_ms": [p50_ms] * 3,
        "wall_s": wall_s,
        "cpu_ticks": {"gateway": gateway, "health": 10},
    }


def test_a_run_is_read_as_the_median_of_its_rounds_for_each_figure_mode_and_latency():
    peer = [_phase(1.0, 1.0, 10)] * 3
    ours = [_phase(2.0, 1.0, 10), _phase(3.0, 2.0, 20), _phase(1.5, 1.0, 30)]
    report = {
        "runs": [
            {
                "connector_latency_ms": 20.0,
                "ours_to_peer": {
                    "sequential": _paired(ours, peer),
                    "concurrent": _paired(peer, peer),
                },
            }
        ]
    }

    medians = run_medians(report)

    assert medians["20ms/sequential/p50"] == 2.0
    assert medians["20ms/sequential/lookups_per_s"] == 1.0
    assert medians["20ms/sequential/gateway_cpu"] == 2.0
    assert medians["20ms/concurrent/p50"] == 1.0
    assert len(medians) == 8


def test_each_revision_keeps_its_runs_in_order_and_their_median():
    runs = [
        ("base", {"0ms/sequential/p50": 1.6}),
        ("this", {"0ms/sequential/p50": 1.4}),
        ("this", {"0ms/sequential/p50": 1.5}),
        ("base", {"0ms/sequential/p50": 1.9}),
        ("base", {"0ms/sequential/p50": 1.7}),
    ]

    table = side_by_side(runs)

    assert table["0ms/sequential/p50"]["base"] == {"runs": [1.6, 1.9, 1.7], "median": 1.7}
    assert table["0ms/sequential/p50"]["this"] == {"runs": [1.4, 1.5], "median": 1.45}


GIT = shutil.which("git") or "/usr/bin/git"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        [GIT, "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose first commit differs from its second; the first's id."""
    repo = tmp_path / "repo"
    (repo / PEER).mkdir(parents=True)
    _git(repo, "init", "--quiet")
    (repo / PEER / "package-lock.json").write_text('{"lockfileVersion": 3}')
    (repo / "code.py").write_text("VERSION = 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "one")
    first = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "code.py").write_text("VERSION = 2\n")
    _git(repo, "commit", "--quiet", "-am", "two")
    return repo, first


def test_the_base_is_checked_out_beside_the_checkout_and_removed_after(tmp_path: Path):
    repo, first = _repo(tmp_path)
    (repo / PEER / "node_modules").mkdir()

    with worktree(repo, first, tmp_path / "base") as tree:
        assert (tree / "code.py").read_text() == "VERSION = 1\n"
        assert (repo / "code.py").read_text() == "VERSION = 2\n"
        # The same pinned packages: the checkout's, linked rather than installed again.
        assert (tree / PEER / "node_modules").resolve() == (repo / PEER / "node_modules")

    assert not (tmp_path / "base").exists()
    assert str(tmp_path / "base") not in _git(repo, "worktree", "list")


def test_a_base_pinning_other_packages_is_not_given_the_checkouts(tmp_path: Path, monkeypatch):
    repo, first = _repo(tmp_path)
    (repo / PEER / "node_modules").mkdir()
    (repo / PEER / "package-lock.json").write_text('{"lockfileVersion": 3, "other": true}')
    # git and nothing else on the path: with no npm, the install is refused, not faked.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(GIT)
    monkeypatch.setenv("PATH", str(bin_dir))

    with pytest.raises(SystemExit, match="npm"), worktree(repo, first, tmp_path / "base"):
        raise AssertionError("the worktree was used without its own packages")

    assert not (tmp_path / "base").exists()
