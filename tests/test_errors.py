"""The error codes portals program against are the ones README.md documents, no more, no fewer."""

import re

from connectors.protocol import ErrorCode as ConnectorErrorCode
from gateway.breakers import CIRCUIT_OPEN
from gateway.config import REPO_ROOT
from gateway.errors import ErrorCode
from gateway.match import RECORD_MISMATCH
from gateway.routing import TOO_MANY_AGENCIES, UNCONFIRMED_IDENTIFIER, UNKNOWN_AGENCY
from resolvers.types import SourceFailure

GATEWAY_SOURCE_CODES = {
    "DEADLINE",
    "TIMEOUT",
    "CONNECTION_FAILED",
    "MALFORMED_RESPONSE",
    "ANSWER_NOT_TRUSTED",
    RECORD_MISMATCH,
    CIRCUIT_OPEN,
    UNKNOWN_AGENCY,
    TOO_MANY_AGENCIES,
    UNCONFIRMED_IDENTIFIER,
}
"""What the gateway itself reports as a source's `failureCode` (gateway.fanout, gateway.match,
gateway.breakers)."""


def _readme_after(opening: str) -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index(opening) :]


def _table_codes(opening: str) -> list[str]:
    """The first column of the README table that follows the paragraph holding `opening`."""
    blocks = _readme_after(opening).split("\n\n")
    return re.findall(r"^\| `([A-Z][A-Z_]+)` \|", blocks[1], re.M)


def _paragraph_codes(opening: str) -> list[str]:
    """Every `CODE` in the README paragraph that starts at `opening`."""
    return re.findall(r"`([A-Z][A-Z_]+)`", _readme_after(opening).split("\n\n")[0])


def test_readme_lists_every_graphql_error_code_once():
    codes = _table_codes("Errors carry a stable `extensions.code`")
    assert sorted(codes) == sorted(set(codes))
    assert set(codes) == set(ErrorCode)


def test_readme_lists_every_source_error_code_once():
    codes = _paragraph_codes("A source's own status comes in `sources { failureCode }`")
    assert sorted(codes) == sorted(set(codes))
    assert set(codes) == set(ConnectorErrorCode) | GATEWAY_SOURCE_CODES
    assert set(codes) == {failure.value for failure in SourceFailure}
