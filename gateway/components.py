"""Wiring: the gateway's parts built from settings, once at start-up, and started for its lifetime.

`build_components` loads what can be checked before serving (policy, audit store, keys, linkage
model) and raises if any of it is unusable, so a misconfigured gateway never starts; it builds the
usage limits too, one set that lookups and auditors' readings of a child's trail both reserve
under. `running` then starts what lives only while the app serves: the connectors' HTTP client,
the lookup pipeline, the notification dispatcher, the audit log's sealing and witnessing, and the
policy reloader.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from connectors.locator import PseudonymKey, load_pseudonym_keys
from connectors.protocol import random_id
from connectors.redis_clients import RedisClient
from connectors.trust import PublishedKeys
from gateway import metrics
from gateway.audit import (
    WITNESSING_LOCK_FILE,
    AccessHistory,
    AuditStore,
    AuditTrail,
    LookupAuditor,
    NotificationDispatcher,
    Pseudonymiser,
    RetryPolicy,
    Witness,
    WitnessDispatcher,
    audit_key,
    configured_witnesses,
    open_audit_store,
    open_outbox,
    previous_audit_keys,
)
from gateway.auth import ClaimNames, JwksKeys, StaticKey, TokenVerifier
from gateway.breakers import Breakers
from gateway.cache import AnswerCache
from gateway.capacity import Capacity
from gateway.config import Asked, Settings, SourceConfig, WitnessConfig, registers
from gateway.document_registry import DocumentRegistry, load_registry
from gateway.fanout import FanOut
from gateway.limits import AccessLimits, InProcessLimits, LimitSettings
from gateway.linkage import LinkageModel, NameFrequencies
from gateway.locator_client import LocatorClient
from gateway.pipeline import LookupPipeline
from gateway.policy import (
    DecisionLog,
    MemoisedPolicyEngine,
    PolicyEngine,
    PolicyError,
    PolicyReloader,
    RemotePolicyEngine,
    policy_engine_from_settings,
)
from gateway.query_store import InProcessQueryStore, QueryStore, RedisQueryStore
from gateway.redis_limits import RedisLimits, redis_client
from gateway.routing import Directory, Router
from gateway.scrape_tokens import Tokens, scrape_tokens
from gateway.signing import AnswerVerifier, RequestSigner, answer_verifiers
from gateway.source_health import SourceHealth
from gateway.tls import connector_client_context
from gateway.transport import ConnectorTransport


@dataclass(frozen=True)
class Components:
    """The long-lived parts of a gateway, built once from settings."""

    settings: Settings
    sources: tuple[SourceConfig, ...]
    policy: PolicyEngine
    audit: AuditStore
    audit_trail: AuditTrail
    access_history: AccessHistory
    verifier: TokenVerifier
    pseudonymiser: Pseudonymiser
    decision_log: DecisionLog
    request_signer: RequestSigner
    answer_verifiers: Mapping[str, AnswerVerifier]
    linkage: LinkageModel
    connector_tls: ssl.SSLContext
    source_health: SourceHealth
    limits: AccessLimits
    """The per-user and per-organisation limits (gateway.limits) lookups and readings of a child's
    audit trail are admitted under: one set, so each counts against the other."""
    redis: RedisClient | None = None
    """The limits' shared store when CHILDLOOKUP_REDIS_URL is set: a connection pool that connects
    when first used and is closed when `running` ends."""
    trusted_documents: DocumentRegistry | None = None
    """The only operations that run, when CHILDLOOKUP_TRUSTED_DOCUMENTS names a manifest."""
    directory: Directory = field(default_factory=lambda: Directory.of((), {}))
    """The agencies asked only when routed (gateway.routing)."""
    pseudonym_keys: tuple[PseudonymKey, ...] = ()
    """The keys the locator is asked with, when CHILDLOOKUP_LOCATOR_URL is set."""
    witnesses: tuple[Witness, ...] = ()
    """Who is sent the audit log's checkpoints (gateway.audit.witnessing)."""
    metrics_tokens: Tokens = lambda: None
    """The bearer tokens /metrics is scraped with now (gateway.scrape_tokens); None: none set."""


def build_components(
    settings: Settings,
    sources: list[SourceConfig],
    *,
    postcode_districts: Mapping[str, str] | None = None,
    witnesses: Sequence[WitnessConfig] = (),
    checking: bool = False,
) -> Components:
    """Load policy, open the audit store and key material; raise if any of them is unusable, as
    one ValueError line naming the setting to fix where it can (a file a setting names that
    cannot be read, an unusable policy). `postcode_districts` and `witnesses` are the sources
    file's (gateway.config.SourcesFile). `checking`: built only to see that it can be, then
    closed (`close`), by `serve --workers`' parent - a decision log on a FIFO is left to the
    workers (`_decision_log`)."""
    settings.check_paths()
    if settings.locator_url is None and any(
        s.shield_authority and s.asked is Asked.WHEN_ROUTED for s in sources
    ):
        # Never routed to (a postcode no district names, a child who moved from the authority
        # shielding them), such an authority's silence could not be told from an answer: only a
        # locator, whose silence is doubt (gateway.plan), says who else may hold the child.
        raise ValueError(
            "a shield_authority asked only when routed needs CHILDLOOKUP_LOCATOR_URL;"
            " without one, ask it on every lookup"
        )
    audit = open_audit_store(settings)
    pseudonymiser = Pseudonymiser(audit_key(settings), previous_audit_keys(settings))
    # Parties are reached over this context, and their published keys fetched over it too.
    connector_tls = connector_client_context(settings.connector_tls, sources)
    verifiers = answer_verifiers(sources, connector_tls)
    redis = None if settings.redis_url is None else redis_client(settings.redis_url)
    limits = access_limits(settings, audit, redis)
    return Components(
        settings=settings,
        sources=tuple(sources),
        policy=_policy(settings),
        audit=audit,
        audit_trail=AuditTrail(audit, pseudonymiser, settings.auditor_roles, limits=limits),
        access_history=AccessHistory(audit, pseudonymiser, sources),
        verifier=TokenVerifier(
            JwksKeys(PublishedKeys(str(settings.jwks_url)))
            if settings.jwks_url
            else StaticKey.from_pem_file(settings.resolved_public_key_file()),
            issuer=settings.issuer,
            audience=settings.audience,
            leeway_s=settings.token_leeway_s,
            max_lifetime_s=settings.token_max_lifetime_s,
            algorithms=settings.token_algorithms,
            claims=ClaimNames(
                settings.role_claim, settings.organisation_claim, settings.assurance_claim
            ),
        ),
        pseudonymiser=pseudonymiser,
        decision_log=_decision_log(settings, checking=checking),
        request_signer=RequestSigner.from_settings(settings),
        answer_verifiers=verifiers,
        linkage=linkage_model(settings),
        connector_tls=connector_tls,
        source_health=SourceHealth([s.name for s in sources if s.asked is Asked.ALWAYS]),
        limits=limits,
        redis=redis,
        trusted_documents=None
        if settings.trusted_documents is None
        else load_registry(settings.trusted_documents),
        directory=Directory.of(sources, postcode_districts or {}),
        pseudonym_keys=()
        if settings.pseudonym_keys_file is None
        else load_pseudonym_keys(settings.pseudonym_keys_file),
        witnesses=configured_witnesses(
            settings.resolved_audit_log_name(), sources, witnesses, verifiers, connector_tls
        ),
        metrics_tokens=scrape_tokens(settings.metrics_token, settings.metrics_token_file),
    )


def _policy(settings: Settings) -> PolicyEngine:
    """The configured policy; one that cannot be used is a ValueError naming where it is from
    (a PolicyError is no ValueError: the command line printed it as a traceback)."""
    try:
        return policy_engine_from_settings(settings)
    except PolicyError as exc:
        where = (
            f"CHILDLOOKUP_OPA_URL {settings.opa_url}"
            if settings.opa_url is not None
            else f"CHILDLOOKUP_POLICY_DIR {settings.policy_dir}"
        )
        raise ValueError(f"cannot use the policy ({where}): {' '.join(str(exc).split())}") from None


def _decision_log(settings: Settings, *, checking: bool) -> DecisionLog:
    """The configured decision log. Checking, one that is neither a file nor a directory (a
    FIFO a log shipper reads, a device) is not opened: opening a FIFO waits for its reader, and
    closing it again, as its last writer, ends the reader's input - a reader such as `cat` then
    leaves, and every worker waits for ever to open the FIFO with no reader."""
    target = settings.resolved_decision_log()
    if checking and target not in ("off", "stdout"):
        path = Path(target)
        if path.exists() and not (path.is_file() or path.is_dir()):
            return DecisionLog.open("off", instance=random_id())
    return DecisionLog.open(target, instance=random_id(), max_bytes=settings.decision_log_max_bytes)


def close(components: Components) -> None:
    """Close what `build_components` opened, for a process that built them only to check that
    they can be (`serve --workers`: each worker builds its own)."""
    components.decision_log.close()
    components.audit.close()


def router(components: Components, transport: ConnectorTransport, fanout: FanOut) -> Router | None:
    """The routing stage, when some agencies are asked only when routed or a locator is set."""
    settings = components.settings
    locator = None
    if settings.locator_url is not None:
        url = str(settings.locator_url).rstrip("/")
        jwks = settings.locator_jwks_url or f"{url}/.well-known/jwks.json"
        locator = LocatorClient(
            url,
            transport,
            components.request_signer,
            AnswerVerifier(PublishedKeys(str(jwks), tls=components.connector_tls)),
            components.pseudonym_keys,
            locator_id=settings.locator_id,
            timeout_ms=settings.locator_timeout_ms,
        )
    if locator is None and not components.directory.agencies:
        return None
    return Router(
        components.directory,
        locator,
        fanout,
        components.linkage,
        locator_agencies_max=settings.locator_agencies_max,
        registers=registers(components.sources),
    )


def access_limits(settings: Settings, audit: AuditStore, redis: RedisClient | None) -> AccessLimits:
    """Limits shared by every process on one Redis when configured, else this process's own."""
    limits = LimitSettings.from_settings(settings)
    if redis is None:
        return InProcessLimits(limits, audit)
    return RedisLimits(redis, settings.redis_prefix, limits, audit)


def persisted_query_store(components: Components) -> QueryStore | None:
    """Where automatic persisted queries are kept: the shared Redis when configured, else this
    process's memory; None when they are off, or trusted documents are on (nothing registers)."""
    settings = components.settings
    if not settings.persisted_queries or components.trusted_documents is not None:
        return None
    if components.redis is None:
        return InProcessQueryStore(settings.persisted_queries_max)
    return RedisQueryStore(
        components.redis, settings.redis_prefix, settings.persisted_queries_ttl_s
    )


def linkage_model(settings: Settings) -> LinkageModel:
    """The configured model file (or the packaged default) with any name frequencies and
    threshold overrides."""
    model = LinkageModel.load(settings.linkage_model_file)
    if settings.link_threshold is not None or settings.possible_threshold is not None:
        # Under overridden thresholds as under the file's: twins in view must never link (and
        # the name frequencies, below, are checked against the threshold in use).
        link, possible = settings.link_threshold, settings.possible_threshold
        model = model.with_thresholds(
            link=model.link_threshold if link is None else link,
            possible=model.possible_threshold if possible is None else possible,
        )
        model.check_twins_cannot_link()
    if settings.name_frequencies_file is not None:
        model = model.with_frequencies(NameFrequencies.load(settings.name_frequencies_file))
    return model


@asynccontextmanager
async def running(components: Components) -> AsyncIterator[LookupPipeline]:
    """The lookup pipeline, with everything it needs running until the context ends."""
    settings = components.settings
    transport = ConnectorTransport(components.connector_tls)
    async with httpx.AsyncClient(timeout=10.0, transport=transport) as client:
        outbox = open_outbox(settings)
        notifier = NotificationDispatcher(
            outbox,
            transport,
            components.request_signer,
            components.sources,
            RetryPolicy.from_settings(settings),
            components.answer_verifiers,
        )
        witnessing = WitnessDispatcher(
            components.audit,
            client,
            components.request_signer,
            components.witnesses,
            log=settings.resolved_audit_log_name(),
            seal_s=settings.audit_seal_s,
            poll_s=settings.audit_witness_poll_s,
            lock=settings.state_dir / WITNESSING_LOCK_FILE,
        )
        fanout = FanOut(
            components.sources,
            transport,
            AnswerCache(settings.cache_ttl_s),
            signer=components.request_signer,
            answer_verifiers=components.answer_verifiers,
            health=components.source_health,
            breakers=Breakers(
                (s.name for s in components.sources),
                settings.circuit_failures,
                settings.circuit_cool_down_s,
                on_change=metrics.circuit_changed,
            ),
        )
        pipeline = LookupPipeline(
            sources=components.sources,
            policy=components.policy,
            decision_log=components.decision_log,
            limits=components.limits,
            fanout=fanout,
            linkage=components.linkage,
            authority=settings.field_authority,
            auditor=LookupAuditor(components.audit, components.pseudonymiser, notifier),
            pseudonymiser=components.pseudonymiser,
            capacity=Capacity(settings.max_lookups_in_flight, settings.max_queue_wait_ms),
            deadline_ms=settings.lookup_deadline_ms,
            demographic_answer_floor_ms=settings.demographic_answer_floor_ms,
            router=router(components, transport, fanout),
        )
        remote = components.policy if isinstance(components.policy, RemotePolicyEngine) else None
        if remote is not None:
            await remote.connect()
        watcher = None
        if remote is None and settings.policy_reload_s > 0:

            def install(engine: PolicyEngine) -> None:
                pipeline.policy = engine

            compiled = components.policy
            reloader = PolicyReloader(
                settings.policy_dir,
                install,
                interval_s=settings.policy_reload_s,
                vet_max_bytes=settings.policy_vet_max_bytes,
                serving=compiled.content if isinstance(compiled, MemoisedPolicyEngine) else None,
            )
            watcher = asyncio.create_task(reloader.watch())
        # Started with the gateway, it also delivers what an earlier run left in the outbox.
        notifier.start()
        witnessing.start()
        try:
            yield pipeline
        finally:
            if watcher is not None:
                watcher.cancel()
            if remote is not None:
                await remote.aclose()
            await notifier.aclose()
            await witnessing.aclose()  # after the last lookup's record: it seals the log
            outbox.close()
            if components.redis is not None:
                await components.redis.aclose()
