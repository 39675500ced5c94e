"""One child lookup, as a line of stages that each take the lookup's context and the stage before:

    authenticate -> plan -> fan out -> match -> second round -> route -> decide -> merge -> audit
    -> respond

Authentication happens at the HTTP edge (gateway.middleware) and the response is shaped by
resolvers; this module runs everything in between. The second round (gateway.second_round) asks
again, with an identifier a linked record holds, the sources the first round could not reach with
it; shield-safe search then judges both rounds together. The audit record is committed before the
result is returned, and if it cannot be, the caller gets an error and no data. A policy failure
releases nothing; a break-glass override the plan permitted is flagged for investigation even if
it then fails, and one refused before it ran (`refuse`) is audited and alerted. Once audited, a
lookup that showed the caller the child's NHS number gives the limits the pseudonyms its records
link the child to, so the daily cap counts the child once whichever identifier it is looked up by
next (gateway.limits.shows_nhs_number says why only then).

Each lookup is observed as it runs (`_observed`): a trace span (each stage adds its own, see
gateway.tracing), its request id on every log line, and its outcome counted (gateway.metrics).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import replace

from connectors.protocol import FieldId, random_id
from gateway import logs, metrics, tracing
from gateway.agency_names import neutral_names, renamed_release, renamed_result, shown_names
from gateway.audit import REFUSED, LookupAuditor, Pseudonymiser
from gateway.capacity import Capacity
from gateway.config import Asked, SourceConfig, registers, sensitive_brokers, sensitive_sources
from gateway.decide import decide
from gateway.errors import ErrorCode, GatewayError
from gateway.fanout import FanOut
from gateway.limits import AccessLimits, refused, shows_nhs_number
from gateway.linkage import LinkageModel
from gateway.match import MatchResult, match_records
from gateway.merge import merge
from gateway.plan import Planning, make_plan
from gateway.policy import DecisionLog, LoggedPolicy, PolicyEngine, PolicyError
from gateway.routing import Router
from gateway.second_round import second_round
from gateway.shield_safe import answer_floor, shield_safe
from gateway.types import (
    Caller,
    IdentifiedBy,
    LookupContext,
    LookupOutcome,
    LookupQuery,
    LookupResult,
    Plan,
    SourceAnswer,
    SourceStatus,
)


class LookupPipeline:
    """Runs lookups; holds no per-lookup state, so one instance serves all requests."""

    def __init__(
        self,
        *,
        sources: Sequence[SourceConfig],
        policy: PolicyEngine,
        decision_log: DecisionLog,
        limits: AccessLimits,
        fanout: FanOut,
        linkage: LinkageModel,
        authority: Mapping[FieldId, Sequence[str]],
        auditor: LookupAuditor,
        pseudonymiser: Pseudonymiser,
        capacity: Capacity,
        deadline_ms: int,
        demographic_answer_floor_ms: int = 0,
        router: Router | None = None,
    ) -> None:
        """With a `router`, agencies asked only when routed are asked when the locator or an
        identity route names them (gateway.routing); a demographic search is then answered no
        sooner than `deadline_ms` after it started, whatever `demographic_answer_floor_ms` says
        (gateway.shield_safe.answer_floor)."""
        self.sources = tuple(sources)
        self._planning = Planning.of(sources, locator=router is not None and router.locates)
        self._router = router
        self._registers = registers(sources)
        self._brokers = sensitive_brokers(sources)
        self._sensitive = sensitive_sources(sources)
        self.policy = policy  # replaced whole by a policy reload, never modified in place
        self.linkage = linkage
        self._log = decision_log
        self._limits = limits
        self._fanout = fanout
        self._authority = authority
        self._audit = auditor
        self._pseudonymiser = pseudonymiser
        self._capacity = capacity
        self._deadline_s = deadline_ms / 1000
        floor_ms = demographic_answer_floor_ms
        if router is not None:
            # A search that found a child goes on to ask the locator and the agencies it and the
            # identity routes name, which a search for nobody never does, and may be hidden only
            # once they answered, up to the deadline: held any less, the clock would tell.
            floor_ms = max(floor_ms, deadline_ms)
        self._answer_floor_s = floor_ms / 1000
        self._running: set[asyncio.Task[LookupResult]] = set()

    async def lookup(self, caller: Caller, query: LookupQuery) -> LookupResult:
        """Run one lookup to its audit record, once it has one of the process's places (see
        gateway.capacity), even if the request that asked is cancelled (a sibling alias failed,
        the client went away): by then an agency may have been asked, and every access is
        audited. A cancelled caller's result is then dropped unseen."""
        started = time.monotonic()
        await self._capacity.acquire()
        task = asyncio.ensure_future(self._run(caller, query))
        self._running.add(task)
        task.add_done_callback(_finished)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _: self._capacity.release())
        result = await asyncio.shield(task)
        await answer_floor(query, started, self._answer_floor_s)  # holding no place meanwhile
        return result

    def _context(self, caller: Caller, query: LookupQuery) -> LookupContext:
        return LookupContext(
            caller=caller,
            query=query,
            request_id=random_id(),
            child_ref=self._pseudonymiser.child_ref(query),
            deadline=time.monotonic() + self._deadline_s,
            # One revision decides the whole lookup, even across a reload.
            policy=LoggedPolicy(self.policy, self._log),
        )

    async def refuse(self, caller: Caller, query: LookupQuery, code: str) -> None:
        """Audit a lookup refused before it could run - a break-glass attempt whose justification
        could not be kept (too long, or holding an NHS number or UPN) - as DENIED with `code`, so
        it raises BREAK_GLASS_REFUSED as a refusal by the policy does: otherwise any role could
        try break-glass unseen. No agency is asked. It is admitted first, as a lookup the policy
        refuses is: a flood of attempts meets the usage limits (RATE_LIMITED and the trawling
        alert) rather than writing an audit record and a break-glass alert for each. The
        justification is not kept: it is what could not be. Raises AUDIT_UNAVAILABLE if the record
        cannot be committed (gateway.audit.LookupAuditor.refusal)."""
        lookup = self._context(caller, replace(query, justification=None))
        await self._admit(lookup)
        await self._audit.refusal(lookup, code)

    async def _run(self, caller: Caller, query: LookupQuery) -> LookupResult:
        lookup = self._context(caller, query)
        return await _observed(lookup, self._stages(lookup))

    async def _stages(self, lookup: LookupContext) -> LookupResult:
        query = lookup.query
        await self._admit(lookup)
        asked_under: Plan | None = None  # the plan the agencies were asked under, once they were
        try:
            plan = await make_plan(lookup, self._planning)
            if not plan.permitted:
                denied = _denied(lookup, plan, self.sources)
                await self._audit.commit(lookup, plan, denied)
                return renamed_result(denied, neutral_names(self._sensitive))
            asked_under = plan
            early = None if self._router is None else self._router.start(lookup)
            answers = await self._fanout.ask(lookup, plan)
            first = match_records(query, answers, self.linkage, registers=self._registers)
            later = _asking_again(lookup)
            both = await second_round(later, plan, first, self._fanout, self.linkage)
            if self._router is not None:
                both = await self._router.route(later, plan, both, early)
            matching, hidden = shield_safe(
                query,
                both,
                plan.doubt_authorities,
                first_round=first,
                unasked=plan.unasked_authorities,
            )
            release = await decide(lookup, plan, matching, self._brokers, self._sensitive)
            if hidden and both.matched:
                # The caller is told nobody was found, but a child was reached: its owners are
                # told of the search as of any lookup, and the audit keeps its flags as they are.
                reached = await decide(lookup, plan, both)
                release = replace(release, flags=reached.flags, notify=reached.notify)
            elif hidden:
                # Hidden for a child it came near but did not single out (a possible match,
                # twins): the audit keeps the flags of what it came near, not of the empty answer.
                flags = release.flags
                near = replace(
                    flags,
                    shielded=flags.shielded or both.shielded_near,
                    restricted=flags.restricted or both.restricted_near,
                )
                release = replace(release, flags=near)
            names = shown_names(plan, release, both.answers, self._sensitive)
            child = merge(renamed_release(release, names).records, self._authority, plan.kinds)
        except PolicyError as exc:
            # Recorded under the plan the agencies were asked under, if they were: a permitted
            # override that failed is still investigated.
            await self._audit.failure(
                lookup, "ERROR", ErrorCode.POLICY_UNAVAILABLE.value, asked_under
            )
            raise GatewayError(
                ErrorCode.POLICY_UNAVAILABLE,
                "The access policy could not be evaluated, so nothing was released. Try again"
                " shortly; if it persists, contact the service desk.",
            ) from exc
        except GatewayError:
            raise  # a refusal that says what happened (the denied lookup's audit failing)
        except Exception:
            # A fault no stage expected (the caller gets INTERNAL_ERROR): agencies may have been
            # asked by then, and every access is audited, this one as failed.
            await self._audit.failure(lookup, "ERROR", ErrorCode.INTERNAL_ERROR.value, asked_under)
            raise
        result = LookupResult(
            request_id=lookup.request_id,
            audit_id=random_id(),
            outcome=_outcome(matching),
            denial=None,
            policy_revision=lookup.policy_revision,
            answers=matching.answers,
            matched=matching.matched,
            unmatched=matching.unmatched,
            possible=matching.possible,
            child=child,
            withheld=release.withheld,
            ambiguity=matching.ambiguity,
        )
        linked_refs = await self._audit.commit(
            lookup,
            plan,
            result,
            release,
            hidden=hidden,
            asked=both.answers,
            ambiguity=both.ambiguity,
            linked=both.matched,
        )
        if linked_refs and shows_nhs_number(release):
            await self._limits.link(lookup.caller, lookup.child_ref, linked_refs)
        return renamed_result(result, names)  # audited under the agencies' own names

    @tracing.stage("admit")
    async def _admit(self, lookup: LookupContext) -> None:
        """Let the lookup go ahead, or audit the refusal, raise the trawling alert and stop it."""
        refusal = await self._limits.reserve(lookup.caller, lookup.child_ref)
        if refusal is None:
            return
        await self._audit.failure(lookup, REFUSED, refusal)
        raise refused(refusal, lookup.caller, "lookup")


async def _observed(lookup: LookupContext, run: Awaitable[LookupResult]) -> LookupResult:
    """Run the lookup in its trace span with its request id on every log line, and count how it
    ended: its outcome, or the error code the caller got."""
    started = time.monotonic()
    outcome = ErrorCode.INTERNAL_ERROR.value
    request_id = logs.REQUEST_ID.set(lookup.request_id)
    try:
        with tracing.lookup_span(lookup) as span:
            result = await run
            outcome = result.outcome.value
            span.set_attribute("childlookup.outcome", outcome)
            return result
    except GatewayError as error:
        outcome = error.code.value
        raise
    except asyncio.CancelledError:
        outcome = "CANCELLED"  # the gateway stopping mid-lookup
        raise
    finally:
        logs.REQUEST_ID.reset(request_id)
        metrics.lookup_finished(lookup.query.purpose.value, outcome, time.monotonic() - started)


def _finished(task: asyncio.Task[LookupResult]) -> None:
    """Retrieve the outcome of a lookup whose caller may have gone: it is audited either way."""
    if not task.cancelled():
        task.exception()


def _asking_again(lookup: LookupContext) -> LookupContext:
    """The lookup as its second round and routing ask agencies again. A demographic search asks
    again only for someone it found, whom shield-safe search may yet hide: answers kept in the
    cache under that child's identifier would answer the caller's next lookup by it `cached`, in
    no time, and tell that the search reached the child (gateway.shield_safe). Kept answers may
    still be read."""
    if lookup.query.identified_by is IdentifiedBy.DEMOGRAPHICS:
        return replace(lookup, keeps_answers=False)
    return lookup


def _denied(lookup: LookupContext, plan: Plan, sources: Sequence[SourceConfig]) -> LookupResult:
    """A lookup the policy refused outright: no agency was asked."""
    return LookupResult(
        request_id=lookup.request_id,
        audit_id=random_id(),
        outcome=LookupOutcome.DENIED,
        denial=plan.denial,
        policy_revision=lookup.policy_revision,
        answers=tuple(
            SourceAnswer(s.name, SourceStatus.NOT_ASKED) for s in sources if s.asked is Asked.ALWAYS
        ),
    )


def _outcome(matching: MatchResult) -> LookupOutcome:
    if matching.ambiguous:
        return LookupOutcome.AMBIGUOUS
    if matching.matched:
        return LookupOutcome.FOUND
    asked = [a for a in matching.answers if a.status is not SourceStatus.NOT_ASKED]
    if not any(a.answered for a in asked):
        return LookupOutcome.UNAVAILABLE
    if all(a.answered for a in asked):
        return LookupOutcome.NOT_FOUND
    return LookupOutcome.NOT_FOUND_INCOMPLETE
