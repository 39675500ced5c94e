"""The check that every refusal the run provoked is one the gateway can read: a protocol
ErrorResponse with a known code, sent with that code's HTTP status.

A refusal the gateway cannot read is reported to practitioners as a malformed source rather than
as what it was (withheld, timed out, failed), so the mapping matters as much as the refusal.
"""

from __future__ import annotations

from typing import Final

from connectors.app import ERROR_STATUS, MAX_BODY_BYTES, PAYLOAD_TOO_LARGE
from connectors.conformance.client import Exchange
from connectors.conformance.results import Outcome, Verdict
from connectors.conformance.session import Check, Session, expect_refusal
from connectors.protocol import ErrorCode


def _mismatch(exchange: Exchange) -> str | None:
    """Why `exchange`'s refusal is not a well-formed one, or None when it is."""
    error = exchange.error()
    if error is None:
        return f"an HTTP {exchange.status} body is not a protocol ErrorResponse with a known code"
    code = error.error.code
    allowed = {ERROR_STATUS[code]}
    if code is ErrorCode.BAD_REQUEST:
        allowed.add(PAYLOAD_TOO_LARGE)
    if exchange.status not in allowed:
        return f"{code} was sent with HTTP {exchange.status}, not {ERROR_STATUS[code]}"
    return None


async def maps_failures_to_error_codes(session: Session) -> Verdict:
    padding = b" " * (MAX_BODY_BYTES + 1)
    body = b'{"protocol_version": "1"' + padding + b"}"
    oversize = await session.client.post_signed(body)
    if oversize.status != PAYLOAD_TOO_LARGE:
        verdict = expect_refusal(oversize, ErrorCode.BAD_REQUEST, "a body over 64 KiB")
        if verdict.outcome is Outcome.FAIL:
            return verdict
    refusals = [exchange for exchange in session.client.exchanges if exchange.status != 200]
    problems = [problem for problem in map(_mismatch, refusals) if problem is not None]
    if problems:
        return Verdict.failed(f"{problems[0]} ({len(problems)} of {len(refusals)} refusals)")
    return Verdict.passed()


CHECKS: Final = (Check("maps_failures_to_error_codes", maps_failures_to_error_codes),)
