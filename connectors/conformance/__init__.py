"""The connector conformance kit: the protocol's checks, run against any connector in any
language over HTTP, with the synthetic dataset it must be loaded with. See docs/conformance.md.

    childlookup connector check --write-dataset DATASET
    childlookup connector check http://127.0.0.1:8101 --agency health
"""

from connectors.conformance.command import conformance_command, main
from connectors.conformance.dataset import (
    ConformanceDataset,
    conformance_dataset,
    conformance_records,
    write_dataset,
)
from connectors.conformance.holdings import Flag, Holdings, holdings
from connectors.conformance.options import ConformanceOptions, add_arguments, options_from_args
from connectors.conformance.results import CheckResult, Outcome, Report, Verdict
from connectors.conformance.suite import CHECK_NAMES, check_connector, run_conformance

__all__ = [
    "CHECK_NAMES",
    "CheckResult",
    "ConformanceDataset",
    "ConformanceOptions",
    "Flag",
    "Holdings",
    "Outcome",
    "Report",
    "Verdict",
    "add_arguments",
    "check_connector",
    "conformance_command",
    "conformance_dataset",
    "conformance_records",
    "holdings",
    "main",
    "options_from_args",
    "run_conformance",
    "write_dataset",
]
