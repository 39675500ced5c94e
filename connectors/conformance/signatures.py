"""The check that the connector signs what it sends back - an answer and a refusal alike - as its
own source, over the exact body, with the key it publishes (or the one the agency gave the
gateway)."""

from __future__ import annotations

from typing import Final

from connectors.conformance.client import Exchange, encoded
from connectors.conformance.results import Verdict
from connectors.conformance.session import Check, Session
from connectors.trust import TrustError, verify_answer


async def signs_answers(session: Session) -> Verdict:
    request = session.by_identifier(session.dataset.plain)
    answer = await session.client.lookup(request)
    answer.answer(request, session.source)  # a real answer, not a refusal, is what is judged
    refusal = await session.client.post(encoded(request), None)
    for what, exchange in (("answer", answer), ("refusal", refusal)):
        problem = await _untrusted(session, exchange)
        if problem is not None:
            return Verdict.failed(f"the {what} ({exchange.describe()}): {problem}")
    return Verdict.passed()


async def _untrusted(session: Session, exchange: Exchange) -> str | None:
    try:
        await verify_answer(
            exchange.signature, exchange.body, session.answer_keys, source=session.source
        )
    except TrustError as error:
        return f"{error.message} (keys from {session.answer_keys_from})"
    return None


CHECKS: Final = (Check("signs_answers", signs_answers),)
