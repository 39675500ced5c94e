"""Every benchmark report has one frame: which benchmark, on what machine, then its results."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def write_report(benchmark: str, out: Path, **results: Any) -> None:
    """Write `results` under the benchmark's name and the machine it ran on, so numbers from a
    2-core VM are never read as a server's."""
    report = {
        "benchmark": benchmark,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
