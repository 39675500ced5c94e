"""One child lookup, as a pipeline of stages that each take a value and return the next:

    authenticate -> plan -> fan out -> match -> decide -> merge -> audit -> respond

Authentication happens at the HTTP edge (gateway.app) and the response is shaped by resolvers; this
module runs everything in between. The audit record is committed before the result is returned, and
if it cannot be, the caller gets an error and no data. A policy failure releases nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import NoReturn

from connectors.protocol import FieldId
from gateway.audit import (
    Access,
    AuditField,
    AuditMatch,
    AuditRecord,
    AuditSource,
    AuditStore,
    AuditUnavailable,
    Pseudonymiser,
    utc_now,
)
from gateway.config import SourceConfig
from gateway.decide import child_flags, decide
from gateway.decision_log import DecisionLog
from gateway.errors import ErrorCode, GatewayError
from gateway.fanout import FanOut
from gateway.limits import RATE_LIMITED, AccessLimits
from gateway.linkage import LinkageModel
from gateway.match import MatchResult, match_records
from gateway.merge import merge
from gateway.notify import NotificationDispatcher, owner_notifications
from gateway.plan import make_plan
from gateway.policy import PolicyEngine, PolicyError
from gateway.shield_safe import shield_safe
from gateway.types import (
    Caller,
    LookupOutcome,
    LookupQuery,
    LookupResult,
    MatchedRecord,
    Plan,
    Purpose,
    Release,
    SourceAnswer,
    SourceStatus,
)

_alerts = logging.getLogger("childlookup.alerts")

HIDDEN = "HIDDEN"
"""Audit outcome of a demographic search that reached a child shield-safe search keeps hidden."""


class LookupPipeline:
    """Runs lookups; holds no per-lookup state, so one instance serves all requests."""

    def __init__(
        self,
        *,
        sources: Sequence[SourceConfig],
        policy: PolicyEngine,
        fanout: FanOut,
        audit: AuditStore,
        pseudonymiser: Pseudonymiser,
        decision_log: DecisionLog,
        limits: AccessLimits,
        deadline_ms: int,
        linkage: LinkageModel,
        authority: Mapping[FieldId, Sequence[str]],
        notifier: NotificationDispatcher | None = None,
    ) -> None:
        """Without a `notifier`, owner notifications are still queued with the audit record; they
        are delivered by whichever gateway next runs a dispatcher on this audit database."""
        self.sources = tuple(sources)
        self.policy = policy  # replaced whole by a policy reload, never modified in place
        self._log = decision_log
        self._limits = limits
        self._fanout = fanout
        self._audit = audit
        self._pseudonymiser = pseudonymiser
        self._deadline_s = deadline_ms / 1000
        self._shield_authorities = frozenset(s.name for s in sources if s.shield_authority)
        self.linkage = linkage
        self._authority = authority
        self._notifier = notifier

    async def lookup(self, caller: Caller, query: LookupQuery) -> LookupResult:
        started = time.monotonic()
        request_id = uuid.uuid4().hex
        policy = self.policy  # one revision decides the whole lookup, even across a reload
        refusal = await self._limits.refusal(caller, self._child_ref(query))
        if refusal is not None:
            await self._refuse(caller, query, request_id, refusal)
        try:
            plan = await make_plan(policy, self._log, caller, query, self.sources)
            if not plan.permitted:
                answers = tuple(SourceAnswer(s.name, SourceStatus.NOT_ASKED) for s in self.sources)
                result = LookupResult(
                    request_id=request_id,
                    audit_id=uuid.uuid4().hex,
                    outcome=LookupOutcome.DENIED,
                    denial=plan.denial,
                    policy_revision=policy.revision,
                    answers=answers,
                )
                await self._record(caller, query, result, plan)
                return result
            answers = await self._fanout.ask(
                plan, query, caller, request_id, started + self._deadline_s
            )
            matching, hidden = shield_safe(
                query,
                match_records(query, answers, self.linkage),
                self._shield_authorities,
            )
            flags = child_flags(matching.matched, matching.answers, self._shield_authorities)
            release = await decide(
                policy, self._log, caller, query, matching.matched, flags, self._unrequested(plan)
            )
        except PolicyError as exc:
            await self._record_failure(
                caller, query, request_id, "ERROR", ErrorCode.POLICY_UNAVAILABLE.value
            )
            raise GatewayError(
                ErrorCode.POLICY_UNAVAILABLE,
                "The access policy could not be evaluated, so nothing was released. Try again"
                " shortly; if it persists, contact the service desk.",
            ) from exc
        result = LookupResult(
            request_id=request_id,
            audit_id=uuid.uuid4().hex,
            outcome=_outcome(matching),
            denial=None,
            policy_revision=policy.revision,
            answers=matching.answers,
            matched=matching.matched,
            unmatched=matching.unmatched,
            possible=matching.possible,
            child=merge(release.records, self._authority),
            withheld=release.withheld,
        )
        await self._record(caller, query, result, plan, release, hidden=hidden)
        return result

    def _unrequested(self, plan: Plan) -> dict[str, frozenset[FieldId]]:
        """Per asked source, what it provides that the plan left out. Sensitive service details
        are not listed here: saying they exist is only honest for a child who has some."""
        left_out = {FieldId.SENSITIVE_SERVICE_DETAILS} | plan.fields
        return {
            s.name: frozenset(s.provides) - left_out for s in self.sources if s.name in plan.sources
        }

    async def _record(
        self,
        caller: Caller,
        query: LookupQuery,
        result: LookupResult,
        plan: Plan,
        release: Release | None = None,
        *,
        hidden: bool = False,
    ) -> None:
        released = release.records if release is not None else ()
        decision_ids = [plan.decision_id] + ([release.decision_id] if release else [])
        access = self._access(caller, query)
        # Queued in the audit record's own transaction: an audited lookup has its owners' notices.
        notices = owner_notifications(
            access, result.audit_id, release.notify if release is not None else ()
        )
        record = AuditRecord(
            access=access,
            audit_id=result.audit_id,
            request_id=result.request_id,
            # The caller saw NOT_FOUND; the auditor sees that shield-safe search hid a child.
            outcome=HIDDEN if hidden else result.outcome.value,
            denial=result.denial,
            error_code=None,
            policy_revision=result.policy_revision,
            decision_ids=decision_ids,
            # Break-glass is never routine: every permitted override is investigated.
            flagged_for_investigation=(
                query.purpose is Purpose.EMERGENCY_OVERRIDE and plan.permitted
            ),
            child_flags=None if release is None else asdict(release.flags),
            sources=[
                AuditSource(a.source, a.status.value, a.error_code, len(a.records), a.cached)
                for a in result.answers
            ],
            matches=[self._audit_match(m) for m in result.matched],
            released=[
                AuditField(r.matched.source, f.value) for r in released for f in sorted(r.fields)
            ],
            withheld=[AuditField(w.source, w.field.value, w.reason) for w in result.withheld],
            notified=[n.audit for n in notices],
        )
        try:
            await self._audit.append(record, [n.message for n in notices])
            if notices and self._notifier is not None:
                self._notifier.wake()
            if record.flagged_for_investigation:
                _alerts.warning(
                    "break-glass override",
                    extra={
                        "event": "break_glass",
                        "context": {"audit_id": record.audit_id, "subject": caller.subject},
                    },
                )
        except AuditUnavailable as exc:
            raise GatewayError(
                ErrorCode.AUDIT_UNAVAILABLE,
                "This lookup could not be recorded in the audit log, so nothing was released."
                " Try again shortly; if it persists, contact the service desk.",
            ) from exc

    async def _refuse(
        self, caller: Caller, query: LookupQuery, request_id: str, refusal: str
    ) -> NoReturn:
        """Audit the refusal, raise the trawling alert, and stop the lookup."""
        await self._record_failure(caller, query, request_id, "REFUSED", refusal)
        _alerts.warning(
            "lookup refused: possible trawling",
            extra={
                "event": "harvesting_alert",
                "context": {
                    "subject": caller.subject,
                    "organisation": caller.organisation,
                    "refusal": refusal,
                },
            },
        )
        if refusal == RATE_LIMITED:
            raise GatewayError(
                ErrorCode.RATE_LIMITED,
                "Too many lookups in the last minute. Wait a moment and try again.",
            )
        raise GatewayError(
            ErrorCode.LOOKUP_CAP_REACHED,
            "You have reached today's limit of different children you can look up. This has"
            " been reported; contact your information governance lead if you need more.",
        )

    async def _record_failure(
        self, caller: Caller, query: LookupQuery, request_id: str, outcome: str, code: str
    ) -> None:
        """Best effort: a failed or refused lookup is audited too; it releases nothing anyway."""
        record = AuditRecord(
            access=self._access(caller, query),
            audit_id=uuid.uuid4().hex,
            request_id=request_id,
            outcome=outcome,
            denial=None,
            error_code=code,
            policy_revision=None,
        )
        with contextlib.suppress(AuditUnavailable):
            await self._audit.append(record)

    def _access(self, caller: Caller, query: LookupQuery) -> Access:
        return Access(
            at=utc_now(),
            subject=caller.subject,
            name=caller.name,
            role=caller.role,
            organisation=caller.organisation,
            purpose=query.purpose.value,
            justification=query.justification,
            child_ref=self._child_ref(query),
        )

    def _child_ref(self, query: LookupQuery) -> str:
        """The pseudonym a lookup is counted and audited under: keyed on its one identifier, or
        on the normalised demographics, so the same search by the same means is the same child."""
        if query.nhs_number is not None:
            return self._pseudonymiser.ref("nhs", query.nhs_number)
        if query.upn is not None:
            return self._pseudonymiser.ref("upn", query.upn)
        assert query.demographics is not None
        return self._pseudonymiser.ref("demographics", query.demographics.model_dump_json())

    def _audit_match(self, matched: MatchedRecord) -> AuditMatch:
        return AuditMatch(
            source=matched.source,
            record_ref=self._pseudonymiser.ref("record", matched.key),
            method=matched.method.value,
            score=matched.score,
            weight=matched.weight,
            reasons=matched.reasons,
        )


def _outcome(matching: MatchResult) -> LookupOutcome:
    if matching.ambiguous:
        return LookupOutcome.AMBIGUOUS
    return LookupOutcome.FOUND if matching.matched else LookupOutcome.NOT_FOUND
