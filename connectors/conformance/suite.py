"""The conformance suite: every check, in order, run against one connector as a gateway would
talk to it, one line printed per check as it completes."""

from __future__ import annotations

import asyncio
import ssl
import sys
from contextlib import ExitStack
from typing import Final, TextIO

import httpx

from connectors.conformance import (
    answers,
    authentication,
    candidates,
    errors,
    flags,
    signatures,
    timing,
    validation,
)
from connectors.conformance.client import ConnectorClient, Nonconformance
from connectors.conformance.dataset import conformance_dataset
from connectors.conformance.identity import KitIdentity, published_jwks
from connectors.conformance.options import ConformanceOptions
from connectors.conformance.results import CheckResult, Report, Verdict
from connectors.conformance.session import Check, Session
from connectors.trust import JWKS_PATH, KeySource, PublishedKeys, StaticKey, load_public_key

SUITE: Final[tuple[Check, ...]] = (
    *authentication.CHECKS,
    *validation.CHECKS,
    *answers.CHECKS,
    *candidates.CHECKS,
    *flags.CHECKS,
    *signatures.CHECKS,
    *errors.CHECKS,  # reviews every refusal the checks before it provoked
    *timing.CHECKS,
)
CHECK_NAMES: Final = tuple(check.name for check in SUITE)


def run_conformance(options: ConformanceOptions, out: TextIO | None = sys.stdout) -> Report:
    """Run the suite against the connector `options` name; print each check's line and the
    tally to `out` (nothing when None). Raises ValueError or OSError when the run cannot be set
    up (unknown agency, bad key file, JWKS port taken); a connector that cannot be reached fails
    its checks instead."""
    return asyncio.run(check_connector(options, out))


async def check_connector(options: ConformanceOptions, out: TextIO | None = None) -> Report:
    """`run_conformance` for a caller already in an event loop."""
    dataset = conformance_dataset(options.agency, fields=options.fields, flags=options.flags)
    identity = KitIdentity.from_key_file(options.key_file, options.issuer)
    if options.jwks_file is not None:
        identity.write_jwks(options.jwks_file)
    answer_keys, answer_keys_from = _answer_keys(options)
    with ExitStack() as stack:
        if options.jwks_port is not None:
            stack.enter_context(published_jwks(identity, options.jwks_host, options.jwks_port))
        async with httpx.AsyncClient(
            base_url=options.url, timeout=options.timeout_s, verify=_tls(options)
        ) as http:
            session = Session(
                client=ConnectorClient(
                    http, identity, options.source_name, timeout_s=options.timeout_s
                ),
                dataset=dataset,
                answer_keys=answer_keys,
                answer_keys_from=answer_keys_from,
                max_ms=options.max_ms,
                lookups=options.lookups,
            )
            results = []
            for check in SUITE:
                result = CheckResult(check.name, await _verdict(check, session))
                results.append(result)
                _print(out, result.line())
    report = Report(tuple(results))
    _print(out, report.summary())
    return report


async def _verdict(check: Check, session: Session) -> Verdict:
    try:
        return await check.run(session)
    except Nonconformance as error:
        return Verdict.failed(error.message)
    except httpx.HTTPError as error:
        return Verdict.failed(f"no answer from the connector ({type(error).__name__}: {error})")


def _answer_keys(options: ConformanceOptions) -> tuple[KeySource, str]:
    if options.answer_key is not None:
        return StaticKey(load_public_key(options.answer_key)), str(options.answer_key)
    url = options.url.rstrip("/") + JWKS_PATH
    return PublishedKeys(url, timeout_s=options.timeout_s), url


def _tls(options: ConformanceOptions) -> ssl.SSLContext | bool:
    if options.tls_ca is None and options.tls_cert is None:
        return True
    context = ssl.create_default_context(
        cafile=None if options.tls_ca is None else str(options.tls_ca)
    )
    if options.tls_cert is not None:
        context.load_cert_chain(options.tls_cert, options.tls_key)
    return context


def _print(out: TextIO | None, line: str) -> None:
    if out is not None:
        print(line, file=out, flush=True)
