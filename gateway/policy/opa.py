"""Asking an OPA server instead of evaluating in-process: same policies, same questions.

Production can run OPA beside the gateway and load the bundle `childlookup policy bundle` writes;
`CHILDLOOKUP_OPA_URL` then switches the gateway to `OpaServerPolicyEngine`, which asks OPA's REST
Data API (`POST /v1/data/childlookup/plan/decision` with `{"input": ...}`) through
opa-python-client's async client. Answers are validated exactly as the in-process engine's are.

Failing closed: a refused connection, a timeout, any status but 200 (redirects are not followed),
a compressed answer or one past MAX_ANSWER_BYTES, a body that is not JSON or an answer without
`result` (OPA's "undefined") is a `PolicyError`. The client's retries are turned off
because a retry after a timeout would double the time a lookup waits for a refusal, and the whole
exchange runs under one deadline.

Revision: every decision asks for OPA's provenance (`?provenance=true`), which names the revision
of each bundle the server had active when it answered, and `revision` becomes that. So the audit
trail records the revision that really decided even after OPA loads a new bundle, which a revision
read once at start-up would not. An answer without a bundle revision (policies pushed through the
Policy API rather than loaded as a bundle) is refused: a decision nobody can trace to a policy
version must not release data. `connect()` reads the revision before the first lookup, for
readiness checks. Do not put this engine behind `MemoisedPolicyEngine`: OPA can change revision
under it, and a remembered answer would outlive the policy that gave it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import anyio
from opa_client import AsyncOpaClient
from pydantic import BaseModel

from connectors.protocol import Caller
from gateway.policy.decisions import (
    DecisionT,
    PlanDecision,
    PlanInput,
    ReleaseChild,
    ReleaseDecision,
    ReleaseInput,
    parse_decision,
)
from gateway.policy.engine import PLAN_ENTRYPOINT, RELEASE_ENTRYPOINT
from gateway.policy.errors import PolicyError
from gateway.policy.interpreter import as_rego_json

MAX_ANSWER_BYTES: Final = 1024 * 1024
"""The most of an OPA answer read: a decision is a few kilobytes."""
_REVISION: Final = re.compile(r"[!-~]{1,128}")
"""A bundle revision as it can be recorded: 1-128 printable ASCII characters, no spaces."""
_PROVENANCE: Final = {"provenance": "true"}
# Read by connect(): a base document every childlookup bundle has, cheap to evaluate and needing
# no input, so the answer's provenance is all that matters.
_PROBE_PATH: Final = "childlookup/purposes"
_PROBE_CALLER: Final = Caller(role="readiness-probe", organisation="READINESS-PROBE")
_PLAN_PROBE: Final = PlanInput(caller=_PROBE_CALLER, purpose="READINESS_PROBE", sources=())
_RELEASE_PROBE: Final = ReleaseInput(
    caller=_PROBE_CALLER,
    purpose="READINESS_PROBE",
    child=ReleaseChild(
        shielded=False, restricted=False, shield_status_known=True, restriction_status_known=True
    ),
    records=(),
)
"""Questions no lookup asks, each of which the decision every lookup asks must answer (deny by
default): an OPA serving another bundle, or this one without a decision, answers the purposes yet
would refuse every lookup, so `connect` - start-up and /readyz - asks them too."""


class OpaServerPolicyEngine:
    """Decisions from an OPA server over its REST Data API; any failure is a PolicyError."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OPA URL {url!r} must be http:// or https:// with a host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            # opa-python-client builds every URL from host and port alone.
            raise ValueError(f"OPA URL {url!r} must not have a path, query or fragment")
        self.url = url
        self.revision = ""
        self._timeout_s = timeout_s
        # opa-python-client writes the host into its URLs as given: an IPv6 literal needs its
        # brackets back, which urlsplit took off (`http://::1:8181/v1` is no URL).
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._client_options: dict[str, Any] = {
            "host": host,
            "port": parts.port or (443 if parts.scheme == "https" else 80),
            "ssl": parts.scheme == "https",
            "retries": 0,
            "timeout": timeout_s,
        }
        self._client: AsyncOpaClient | None = None
        self._resources = AsyncExitStack()
        self._opening = anyio.Lock()

    async def connect(self) -> str:
        """Open the connection and learn the served revision before the first lookup, once the
        decisions every lookup asks are answered (`_PLAN_PROBE`)."""
        _, revision = await self._ask(
            lambda client: client.get_data(_PROBE_PATH, _PROVENANCE), _PROBE_PATH
        )
        await self.plan_at(_PLAN_PROBE)
        await self.release_at(_RELEASE_PROBE)
        self.revision = revision
        return revision

    async def aclose(self) -> None:
        await self._resources.aclose()
        self._client = None

    async def plan(self, request: PlanInput) -> PlanDecision:
        return (await self.plan_at(request))[0]

    async def release(self, request: ReleaseInput) -> ReleaseDecision:
        return (await self.release_at(request))[0]

    async def plan_at(self, request: PlanInput) -> tuple[PlanDecision, str]:
        return await self._decide(PLAN_ENTRYPOINT, request, PlanDecision)

    async def release_at(self, request: ReleaseInput) -> tuple[ReleaseDecision, str]:
        return await self._decide(RELEASE_ENTRYPOINT, request, ReleaseDecision)

    async def _decide(
        self, entrypoint: str, request: BaseModel, decision_type: type[DecisionT]
    ) -> tuple[DecisionT, str]:
        """The decision and the revision that made it: concurrent lookups share this engine, so
        the revision travels with the answer, never through an attribute another answer sets."""
        document = request.model_dump(mode="json")
        package, rule = entrypoint.rsplit("/", 1)
        result, revision = await self._ask(
            lambda client: client.query_rule(document, package, rule, _PROVENANCE), entrypoint
        )
        self.revision = revision  # the latest seen, for readiness and lookups yet to decide
        return parse_decision(as_rego_json(result), decision_type), revision

    async def _ask(
        self, call: Callable[[AsyncOpaClient], Awaitable[Any]], path: str
    ) -> tuple[Any, str]:
        """Run one request under the deadline; return its `result` and the revision that gave
        it."""
        try:
            with anyio.fail_after(self._timeout_s):
                client = await self._open()
                body = await call(client)
        except TimeoutError:
            raise PolicyError(
                f"OPA at {self.url} did not answer {path} within {self._timeout_s * 1000:.0f} ms."
            ) from None
        except Exception as error:
            # aiohttp's errors for a refused connection or a non-200 status, ValueError for a body
            # that is not JSON, and opa-python-client's own exception types, which share no base
            # class: whichever it is, the policy did not answer and nothing is released.
            raise PolicyError(f"OPA at {self.url} failed to answer {path}: {error!r}") from error
        if not isinstance(body, dict) or "result" not in body:
            raise PolicyError(f"OPA at {self.url} gave no answer for {path} (undefined).")
        return body["result"], _revision(body, self.url)

    async def _open(self) -> AsyncOpaClient:
        async with self._opening:
            if self._client is None:
                self._client = await self._resources.enter_async_context(
                    _BoundedOpaClient(**self._client_options)
                )
            return self._client


class _BoundedOpaClient(AsyncOpaClient):  # type: ignore[misc]
    """opa-python-client, its answers read as a decision must be: from the server asked (no
    redirect followed: aiohttp follows them by default, which re-sent the policy input to, and
    took the decision of, wherever a 307 pointed), with status 200 only, uncompressed, and to at
    most MAX_ANSWER_BYTES (aiohttp read and unpacked any size: a 1.5 MB gzip bomb took 3 GB and
    held the event loop past the deadline)."""

    @asynccontextmanager
    async def _request(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[_Answer]:
        headers = {"Accept-Encoding": "identity"}
        async with self._session.request(
            method, url, headers=headers, allow_redirects=False, auto_decompress=False, **kwargs
        ) as answer:
            yield _Answer(answer)


class _Answer:
    """The part of aiohttp's response opa-python-client reads, read within bounds."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    def raise_for_status(self) -> None:
        if self.status != 200:
            raise ValueError(f"HTTP {self.status}")

    async def json(self) -> Any:
        self.raise_for_status()
        if self._response.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise ValueError("a compressed answer to a request for an uncompressed one")
        body = b""
        while chunk := await self._response.content.read(MAX_ANSWER_BYTES + 1 - len(body)):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise ValueError(f"an answer larger than {MAX_ANSWER_BYTES} bytes")
        return json.loads(body)


def _revision(body: dict[str, Any], url: str) -> str:
    """The revision of the bundle(s) that answered, from OPA's provenance."""
    provenance = body.get("provenance")
    bundles = provenance.get("bundles") if isinstance(provenance, dict) else None
    revisions = {
        name: entry.get("revision") if isinstance(entry, dict) else None
        for name, entry in (bundles if isinstance(bundles, dict) else {}).items()
    }
    if unrevised := sorted(
        str(name) for name, rev in revisions.items() if not rev or not isinstance(rev, str)
    ):
        # Not passed over: beside a bundle that has one, the decision would be recorded under a
        # revision that may not be the rules' that made it.
        raise PolicyError(
            f"OPA at {url} answered with bundle {', '.join(map(repr, unrevised))} without a"
            " revision: build every bundle with `childlookup policy bundle`, which gives it one."
        )
    if not revisions:
        raise PolicyError(
            f"OPA at {url} answered without a bundle revision: load the policies as a bundle"
            " (`childlookup policy bundle`) so every decision can be traced to a version."
        )
    if not all(map(_REVISION.fullmatch, (*revisions, *revisions.values()))):
        # Recorded in every audit record and decision log line, and shown in answers.
        raise PolicyError(
            f"OPA at {url} answered with a bundle name or revision that is not 1-128 printable"
            " characters."
        )
    if len(revisions) == 1:
        return str(next(iter(revisions.values())))
    return ", ".join(f"{name}={revision}" for name, revision in sorted(revisions.items()))
