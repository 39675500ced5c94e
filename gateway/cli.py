"""The `childlookup` command line: demo, gateway, connectors, tokens, synthetic data, policy."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError
from pydantic_settings import SettingsError

from connectors.cli import add_commands as add_connector_commands
from connectors.cli import add_tls_arguments, add_tls_check, run_command, tls_files
from connectors.synthetic.national.command import add_national_arguments
from gateway.config import (
    Mode,
    ServerTls,
    Settings,
    invalid_settings_message,
    unknown_variables,
)
from gateway.logs import configure as configure_logging
from locator.cli import add_commands as add_locator_commands

if TYPE_CHECKING:
    from gateway.audit import AuditStore, Checkpoint, Outbox, OutboxEntry

DEFAULT_SEGMENT_RECORDS = 5_000
"""Records per archive segment: deleting them holds an SQLite log's write lock ~0.17 s on a 2-core
VM (gateway.audit.archive), under the 250 ms a lookup's audit write waits before failing closed."""
MAX_QUERY_RECORDS = 1_000_000
"""The most records one `audit query` prints, or one archive segment holds."""
MAX_ARCHIVE_DAYS = 36_500
"""The oldest an archive cutoff may be (100 years): further back is before any log."""

ROLES = (
    "social_worker",
    "health_visitor",
    "school_nurse",
    "gp",
    "ed_clinician",
    "school_dsl",
    "police_safeguarding",
    "la_shielding_admin",
    "auditor",
)


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import DemoOptions, run_demo

    if args.national is not None:
        from gateway.national import NationalOptions, run_national_demo

        run_national_demo(
            NationalOptions(
                directory=args.national,
                state_dir=args.state_dir,
                host=args.host,
                port=args.port,
                shards=args.shards,
                seed=args.seed,
                children=args.children,
            )
        )
        return 0
    run_demo(
        DemoOptions(
            host=args.host,
            port=args.port,
            seed=args.seed,
            children=args.children,
            state_dir=args.state_dir,
            latency_ms=args.latency_ms,
            agency_formats=args.agency_formats,
            trusted_documents=args.trusted_documents,
        )
    )
    return 0


_log = logging.getLogger("childlookup.gateway")

TLS_FLAGS: Final = {
    "cert_file": "--tls-cert",
    "key_file": "--tls-key",
    "client_ca_file": "--tls-client-ca",
    "client_crl_file": "--tls-client-crl",
    "reload_s": "--tls-reload-s",
}
"""The --tls-* option each field of ServerTls comes from, for naming it in an error."""


def _server_tls(args: argparse.Namespace) -> ServerTls | None:
    """The --tls-* options of a serving command, or None when none is given."""
    files = tls_files(args)
    if files is None:
        return None
    try:
        return ServerTls(
            cert_file=files.cert,
            key_file=files.key,
            client_ca_file=files.client_ca,
            client_crl_file=files.client_crl,
            reload_s=args.tls_reload_s,
        )
    except ValidationError as exc:
        raise ValueError(invalid_settings_message(exc, TLS_FLAGS)) from None


def _settings(flags: Mapping[str, str] | None = None, **given: Any) -> Settings:
    """The settings, from the environment and `given` (the command line's: `flags` names the
    option of each such field), as every command reads them. First each CHILDLOOKUP_ variable
    that is no setting is warned of (gateway.config.unknown_variables), since it is ignored;
    then settings that do not validate are one ValueError line naming each variable or option
    and what is wrong, never the value given (gateway.config.invalid_settings_message)."""
    for name, meant in unknown_variables(os.environ).items():
        _log.warning(
            "%s is not a setting and is ignored%s",
            name,
            "" if meant is None else f"; did you mean {meant}?",
            extra={"event": "unknown_setting", "context": {"variable": name, "meant": meant}},
        )
    try:
        return Settings(**given)
    except (ValidationError, SettingsError) as exc:
        raise ValueError(invalid_settings_message(exc, flags)) from None


def _state_settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, as `serve` reads them, with --state-dir when given."""
    if args.state_dir is None:
        return _settings()
    return _settings({"state_dir": "--state-dir"}, state_dir=args.state_dir)


def _serve(args: argparse.Namespace) -> int:
    # prometheus-client writes into PROMETHEUS_MULTIPROC_DIR as soon as it is imported (below):
    # a directory named but not yet made must exist first.
    if multiproc_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        Path(multiproc_dir).mkdir(parents=True, exist_ok=True)
    from connectors.serving import ServedApp, bind_socket, run, serve_all
    from gateway.app import begin_draining, create_app
    from gateway.components import build_components
    from gateway.config import load_sources_file
    from gateway.tls import server_context
    from gateway.tokens import ensure_dev_keys
    from gateway.workers import check_shared_limits

    overrides = {
        "sources_file": args.config,
        "host": args.host,
        "port": args.port,
        "server_tls": _server_tls(args),
    }
    flags = {
        "sources_file": "--config",
        "host": "--host",
        "port": "--port",
        "server_tls": "--tls-*",
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = _settings({k: flags[k] for k in given}, **given)
    if settings.sources_file is None:
        raise ValueError("name the connector config with --config or CHILDLOOKUP_SOURCES_FILE")
    if args.workers > 1:
        check_shared_limits(settings)
    settings.check_paths()
    if settings.server_tls is not None and args.workers > 1:
        settings.server_tls.files().load()  # checked once here; each worker loads and watches
    sources_file = load_sources_file(settings.sources_file)
    sources = sources_file.sources
    if settings.verifies_dev_tokens():
        ensure_dev_keys(settings.state_dir)  # the key pair `childlookup token` signs with
    if args.workers > 1:
        return _serve_workers(settings, args.workers, len(sources))
    tls = None if settings.server_tls is None else server_context(settings.server_tls)
    components = build_components(
        settings,
        sources,
        postcode_districts=sources_file.postcode_districts,
        witnesses=sources_file.witnesses,
    )
    app = create_app(components)
    served = ServedApp("gateway", app, bind_socket(settings.host, settings.port), tls)
    print(f"childlookup gateway on {served.url}/graphql ({len(sources)} sources)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        run(
            serve_all(
                [served],
                log_level="info",
                drain_s=settings.shutdown_drain_s,
                on_drain=lambda: begin_draining(app),
            )
        )
    return 0


def _serve_workers(settings: Settings, workers: int, sources: int) -> int:
    """`serve --workers N`: the workers read their settings from the environment, so what the
    command line gave goes there first (gateway.workers)."""
    from connectors.serving import bind_socket, socket_url
    from gateway.components import close
    from gateway.workers import serve_workers, worker_components

    assert settings.sources_file is not None
    os.environ["CHILDLOOKUP_SOURCES_FILE"] = str(settings.sources_file.resolve())
    if settings.server_tls is not None:
        os.environ["CHILDLOOKUP_SERVER_TLS"] = settings.server_tls.model_dump_json()
    # Built here as each worker will build them, so what would stop one process stops this one
    # with the same line, before any worker starts (and is restarted, failing again).
    close(worker_components(checking=True))
    sock = bind_socket(settings.host, settings.port)
    url = socket_url(sock, tls=settings.server_tls is not None)
    print(
        f"childlookup gateway on {url}/graphql ({sources} sources, {workers} workers)", flush=True
    )
    serve_workers(settings, sock, workers)
    return 0


def _token(args: argparse.Namespace) -> int:
    from gateway.tokens import DEV_TOKEN_TTL_S, ensure_dev_keys, issue_dev_token

    settings = _state_settings(args)
    if settings.mode is not Mode.DEV:
        raise ValueError("`token` issues dev tokens, which production mode never accepts")
    key_path = ensure_dev_keys(settings.state_dir)
    token = issue_dev_token(
        key_path.read_bytes(),
        role=args.role,
        organisation=args.org,
        name=args.name or f"Dev {args.role.replace('_', ' ')}",
        issuer=settings.issuer,
        audience=settings.audience,
        ttl_s=min(DEV_TOKEN_TTL_S, settings.token_max_lifetime_s) if args.ttl is None else args.ttl,
        max_lifetime_s=settings.token_max_lifetime_s,
    )
    print(token)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from connectors.synthetic import NoiseProfile, generate_population, write_population
    from connectors.synthetic.national.command import synth_national

    if args.national:
        return synth_national(args)

    population = generate_population(
        args.seed, args.children, noise=NoiseProfile.preset(args.noise)
    )
    summary = write_population(population, args.out)
    print(f"wrote synthetic population to {args.out}: {summary}")
    return 0


def _policy_test(args: argparse.Namespace) -> int:
    from gateway.policy import policy_test_main

    return policy_test_main(args.directory, verbose=args.verbose)


def _policy_explain(args: argparse.Namespace) -> int:
    from gateway.workbench import Scenario, Situation, explain_main

    situation = Situation(
        shielded=args.shielded,
        restricted=args.restricted,
        shield_status_unknown=args.shield_unknown,
        restriction_status_unknown=args.restriction_unknown,
        sensitive=args.sensitive,
    )
    scenario = Scenario(args.role, args.purpose, situation, justified=not args.no_justification)
    return explain_main(args.dir, scenario, as_json=args.json)


def _policy_diff(args: argparse.Namespace) -> int:
    from gateway.workbench import diff_main

    return diff_main(args.old, args.new, args.dir, args.output)


def _policy_bundle(args: argparse.Namespace) -> int:
    from gateway.workbench import bundle_main

    return bundle_main(args.dir, args.out)


@contextlib.contextmanager
def _audit_store(settings: Settings, *, sign: bool = False) -> Iterator[AuditStore]:
    """Open an existing audit log (never create one: verifying a typo'd path must not pass), in
    PostgreSQL when CHILDLOOKUP_DATABASE_URL is set; with `sign`, able to sign checkpoints with
    the gateways' existing key, as an operator's action written to the log may."""
    from gateway.audit import open_audit_store

    store = open_audit_store(settings, create=False, sign=sign)
    try:
        with _one_line_store_errors(settings):
            yield store
    finally:
        store.close()


@contextlib.contextmanager
def _one_line_store_errors(settings: Settings) -> Iterator[None]:
    """A database error inside the block as one line naming the log (ValueError), not a
    traceback: a SQLite log damaged past its schema or held locked by another process, a
    PostgreSQL server that went away (or whose pool timed out) or refused the read."""
    import psycopg

    try:
        yield
    except sqlite3.Error as exc:
        path = settings.resolved_audit_db()
        raise ValueError(f"cannot read the audit log at {path}: {exc}") from exc
    except psycopg.Error as exc:  # psycopg_pool.PoolTimeout is one too
        where = f"PostgreSQL schema {settings.database_schema}"
        raise ValueError(
            f"cannot read the audit log in {where}: {' '.join(str(exc).split())}"
        ) from exc


def _print_lines(rows: Sequence[object], noun: str) -> None:
    """JSON lines on stdout for tools to read, and the count on stderr for the person."""
    for row in rows:
        print(json.dumps(row, sort_keys=True))
    print(f"{len(rows)} {noun}", file=sys.stderr)


def _audit_verify(args: argparse.Namespace) -> int:
    """The chain and its checkpoints, then (when it holds) the archived segments (--archive) and
    the log against each --witness."""
    from gateway.audit import checkpoint_keys, compare_with_witnesses, verify_archive

    settings = _state_settings(args)
    with _audit_store(settings) as store:
        report = store.verify()
        print(report.describe())
        if not report.ok:
            return 1
        keys = checkpoint_keys(settings, create=False)
        archived: list[Checkpoint] = []
        if args.archive is None and report.archived is not None:
            # Only the segments prove the records before the anchor were archived, not deleted:
            # the log's note of an archive is not signed.
            print(
                f"records 1..{report.archived.seq} not checked: they are archived, and only"
                " `--archive DIR` checks them against their segments"
            )
        if args.archive is not None:
            archive = verify_archive(store.archived(), args.archive, keys)
            print(archive.describe())
            if not archive.ok:
                return 1
            archived = archive.checkpoints
        if not args.witness:
            return 0
        # Witnessed checkpoints older than the live log are compared with the segments' when
        # they were read, else skipped as archived.
        anchor = None if args.archive is not None else report.archived
        verdicts = asyncio.run(
            compare_with_witnesses(
                store,
                args.witness,
                settings.resolved_audit_log_name(),
                keys,
                covers_from=0 if anchor is None else anchor.seq,
                archived=archived,
            )
        )
    for verdict in verdicts:
        print(verdict.message)
    return 0 if all(v.ok for v in verdicts) else 1


def _audit_archive(args: argparse.Namespace) -> int:
    """Move the audit records before the cutoff into a segment in --to, and the decision logs
    rotated before it (gateway.audit.archive)."""
    from gateway.audit import archive_files, archive_log, checkpoint_keys, utc_now
    from gateway.policy import rotated_decision_logs

    settings = _state_settings(args)
    days = (
        settings.audit_archive_after_days if args.older_than_days is None else args.older_than_days
    )
    if days < 0:
        raise ValueError("--older-than-days must not be negative")
    if days > MAX_ARCHIVE_DAYS:
        raise ValueError(f"--older-than-days must be at most {MAX_ARCHIVE_DAYS}")
    before = args.before or utc_now() - timedelta(days=days)
    if not 1 <= args.max_records <= MAX_QUERY_RECORDS:
        raise ValueError(f"--max-records must be from 1 to {MAX_QUERY_RECORDS}")
    keys = checkpoint_keys(settings, create=False)
    segments = 0
    with _audit_store(settings) as store:
        # One segment, one short deleting transaction, at a time: appends wait in between.
        while segment := archive_log(store, args.to, before, keys, max_records=args.max_records):
            segments += 1
            print(
                f"archived records {segment.first_seq}..{segment.end.seq} into"
                f" {args.to / segment.end.file}; the live log starts at record"
                f" #{segment.end.seq + 1}"
            )
    if segments == 0:
        print(
            f"no audit records to archive before {before.isoformat()}: none is covered by a"
            " checkpoint before then whose records' owner notifications were all delivered"
        )
    moved = archive_files(rotated_decision_logs(settings.resolved_decision_log(), before), args.to)
    print(f"{len(moved)} rotated decision logs archived")
    return 0


def _audit_query(args: argparse.Namespace) -> int:
    from gateway.audit import Pseudonymiser, audit_key, previous_audit_keys
    from gateway.identifiers import named_child

    settings = _state_settings(args)
    child_refs: tuple[str, ...] = ()
    if args.child is not None or args.child_upn is not None:
        pseudonymiser = Pseudonymiser(
            audit_key(settings, create=False), previous_audit_keys(settings)
        )
        child_refs = pseudonymiser.refs(*named_child(nhs_number=args.child, upn=args.child_upn))
    with _audit_store(settings) as store:
        records = store.records(
            child_refs=child_refs, subject=args.user, since=args.since, limit=args.limit
        )
    _print_lines(records, "records")
    if len(records) == args.limit:
        print(
            f"the first {args.limit} only (oldest first): there may be more; narrow with --since"
            " or raise --limit",
            file=sys.stderr,
        )
    return 0


def _audit_alerts(args: argparse.Namespace) -> int:
    from gateway.audit import BREAK_GLASS_ALERTS, LIMIT_ALERTS

    unknown = set(args.kind or ()) - {*BREAK_GLASS_ALERTS, *LIMIT_ALERTS}
    if unknown:
        raise ValueError(f"no alert is of kind {', '.join(sorted(unknown))}")
    with _audit_store(_state_settings(args)) as store:
        alerts = store.alerts(since=args.since, kinds=args.kind)
    if args.by_user:
        _print_lines(_alerts_by_user(alerts), "users and kinds")
    else:
        _print_lines(alerts, "alerts")
    return 0


def _alerts_by_user(alerts: Sequence[dict[str, str | None]]) -> list[dict[str, object]]:
    """One line per user and kind, the most alerted first: a script refused at every call raises
    thousands of alerts, which information governance reads as one user to look into."""
    counts: Counter[tuple[str | None, str | None, str | None]] = Counter()
    first: dict[tuple[str | None, str | None, str | None], str | None] = {}
    last = dict(first)
    for alert in alerts:  # oldest first
        key = (alert["subject"], alert["organisation"], alert["kind"])
        counts[key] += 1
        first.setdefault(key, alert["at"])
        last[key] = alert["at"]
    return [
        {
            "subject": subject,
            "organisation": organisation,
            "kind": kind,
            "alerts": count,
            "first": first[subject, organisation, kind],
            "last": last[subject, organisation, kind],
        }
        for (subject, organisation, kind), count in counts.most_common()
    ]


@contextlib.contextmanager
def _outbox(settings: Settings) -> Iterator[Outbox]:
    """The notification outbox beside an existing audit log (never a new one, as `_audit_store`)."""
    from gateway.audit import existing_audit_log, open_outbox

    if settings.database_url is None:
        existing_audit_log(settings)
    outbox = open_outbox(settings)
    try:
        with _one_line_store_errors(settings):
            yield outbox
    finally:
        outbox.close()


def _entry_line(entry: OutboxEntry) -> dict[str, object]:
    """An outbox row for an operator: where it stands, never its payload."""

    def when(at: float | None) -> str | None:
        return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()

    return {
        "message_id": entry.message_id,
        "audit_id": entry.audit_id,
        "source": entry.source,
        "state": entry.state.value,
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "queued_at": when(entry.queued_at),
        "finished_at": when(entry.finished_at),
        "passed_on": entry.passed_on,
    }


def _notifications_list(args: argparse.Namespace) -> int:
    from gateway.audit import OutboxState

    states = [OutboxState(state) for state in args.state or ["DEAD"]]
    with _outbox(_state_settings(args)) as outbox:
        entries = outbox.entries(states=states)
    lines = [_entry_line(e) for e in entries if args.source in (None, e.source)]
    _print_lines(lines, "notifications")
    return 0


def _notifications_show(args: argparse.Namespace) -> int:
    with _outbox(_state_settings(args)) as outbox:
        found = outbox.entries(message_id=args.message_id)
    if not found:
        raise ValueError(f"no notification {args.message_id} in the outbox")
    (entry,) = found
    notification = None if entry.payload is None else json.loads(entry.payload)
    print(json.dumps(_entry_line(entry) | {"notification": notification}, indent=2))
    return 0


def _notifications_resend(args: argparse.Namespace) -> int:
    if bool(args.message_id) == args.all:
        raise ValueError("name the notifications to send again, or give --all")
    with _outbox(_state_settings(args)) as outbox:
        queued = outbox.resend(
            datetime.now(UTC).timestamp(), args.message_id or (), source=args.source
        )
    _print_lines([{"message_id": message_id} for message_id in queued], "queued again")
    return _left_as_they_are(args.message_id or (), queued)


MAX_PASSED_ON_CHARS = 500
MAX_OPERATOR_CHARS = 100
OPERATOR_ROLE = "operator"
"""The role an operator's command is recorded with; the subject is `operator:<--by>`."""


def _notifications_passed_on(args: argparse.Namespace) -> int:
    """Each close is made with its audit record, in one transaction, or not at all."""
    from gateway.audit import AuditUnavailable, passed_on_record
    from gateway.identifiers import holds_child_identifier
    from gateway.justification import Justification
    from gateway.types import Caller

    # As a practitioner's justification is kept: what a reader sees, with no right-to-left
    # override or terminal escape to make an operator's name read as someone else's.
    how, by = (Justification.of(text).text for text in (args.how, args.by))
    if not how or len(how) > MAX_PASSED_ON_CHARS:
        raise ValueError(
            f"--how says who told whom at the agency, when and how, in 1-{MAX_PASSED_ON_CHARS}"
            " characters"
        )
    if not by or len(by) > MAX_OPERATOR_CHARS:
        raise ValueError(
            f"--by names you, as your organisation knows you, in 1-{MAX_OPERATOR_CHARS} characters"
        )
    if any(map(holds_child_identifier, (how, by))):
        raise ValueError(
            "--how and --by must not name the child: one holds an NHS number or a UPN (the"
            " message says which records, and it is erased once closed)"
        )
    settings = _state_settings(args)
    operator = Caller(f"operator:{by}", by, OPERATOR_ROLE, settings.gateway_id)
    with _audit_store(settings, sign=True) as store:
        try:
            closed = store.pass_on(
                args.message_id,
                how,
                datetime.now(UTC).timestamp(),
                functools.partial(passed_on_record, operator),
            )
        except AuditUnavailable as exc:
            raise ValueError(
                f"nothing was closed: the audit log could not record it ({exc})"
            ) from exc
    _print_lines([{"message_id": entry.message_id} for entry in closed], "closed as passed on")
    return _left_as_they_are(args.message_id, [entry.message_id for entry in closed])


def _left_as_they_are(named: Sequence[str], done: Sequence[str]) -> int:
    """Exit 1, naming them, when some of the notifications `named` were not dead letters."""
    left = sorted(set(named) - set(done))
    if left:
        print(f"not dead letters, left as they are: {', '.join(left)}", file=sys.stderr)
        return 1
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from gateway.audit import upgrade_schema

    settings = _settings()
    if settings.database_url is None:
        raise ValueError(
            "CHILDLOOKUP_DATABASE_URL is not set: the SQLite audit log needs no migration"
        )
    revision = upgrade_schema(settings.database_url, settings.database_schema)
    print(f"audit database schema {settings.database_schema} at revision {revision}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from resolvers.schema import SCHEMA_FILE, export_sdl

    sdl = export_sdl()
    if args.breaking:
        from resolvers.contract import changes_since_release

        changes = changes_since_release(sdl)
        sys.stdout.write(changes.report())
        return 0 if changes.ok else 1
    if args.check:
        if not SCHEMA_FILE.exists() or SCHEMA_FILE.read_text(encoding="utf-8") != sdl:
            print(
                f"{SCHEMA_FILE.name} is out of date: run `childlookup schema --write`.",
                file=sys.stderr,
            )
            return 1
        print(f"{SCHEMA_FILE.name} is up to date.")
        return 0
    if args.write:
        from gateway.workbench import write_whole

        write_whole(SCHEMA_FILE, sdl.encode())
        print(f"wrote {SCHEMA_FILE}")
        return 0
    sys.stdout.write(sdl)
    return 0


def _portal_manifest(args: argparse.Namespace) -> int:
    import portal

    text = portal.manifest_text()
    if args.check:
        if not portal.MANIFEST_FILE.exists() or portal.MANIFEST_FILE.read_text("utf-8") != text:
            print(
                f"{portal.MANIFEST_FILE} is out of date: run"
                f" `childlookup portal manifest --out {portal.MANIFEST_FILE}`.",
                file=sys.stderr,
            )
            return 1
        print(f"{portal.MANIFEST_FILE.name} is up to date.")
        return 0
    if args.out is None:
        sys.stdout.write(text)
        return 0
    from gateway.workbench import write_whole

    write_whole(args.out, text.encode())  # whole or not at all: a gateway trusts what it lists
    print(f"wrote {args.out} ({len(portal.operations())} operations)")
    return 0


def _timestamp(text: str) -> datetime:
    """A time in UTC, as the log holds times (UTC when written without a zone); one UTC cannot
    hold (year 1 at +14:00) is a usage error, not an overflow deep in a query."""
    moment = datetime.fromisoformat(text)
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text} is outside the times UTC can hold") from None


def _count(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`, where a database would otherwise
    read a negative one as "no limit" or overflow on a huge one."""

    def count(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not from {low} to {high}")
        return value

    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="childlookup",
        description="Federated child lookup: who else is working with this child?",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the demo gateway with three reference connectors")
    demo.add_argument(
        "--host", default="127.0.0.1", help="address the gateway listens on (default 127.0.0.1)"
    )
    demo.add_argument(
        "--port",
        type=int,
        default=8000,
        help="the gateway's port (default 8000); the connectors take free ports of their own",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed of the synthetic population (default 7): the same seed, the same children",
    )
    demo.add_argument(
        "--children",
        type=int,
        default=2000,
        help="children in the synthetic population"
        " (default 2000; NHS numbers 9000000000-9999999999, never issued to real people)",
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".childlookup"),
        help="where the demo keeps its keys, audit log and population (default .childlookup)",
    )
    demo.add_argument(
        "--latency-ms", type=float, default=0.0, help="added connector latency (ms, default 0)"
    )
    demo.add_argument(
        "--agency-formats",
        action="store_true",
        help="agencies answer from real formats: health from a FHIR (PDS, CP-IS) test server, "
        "social care from SQL (SQLite), education from Common Transfer Files",
    )
    demo.add_argument(
        "--trusted-documents",
        nargs="?",
        type=Path,
        const=True,
        default=False,
        metavar="FILE",
        help="only registered operations run: the banner's examples (written to the state dir), "
        "or those in FILE (an Apollo manifest or codegen's persisted-documents.json)",
    )
    demo.add_argument(
        "--national",
        type=Path,
        metavar="DIR",
        help="national shape: thousands of agencies of the population in DIR (written there with"
        " --seed and --children when missing; e.g. --children 20000), the locator and the gateway",
    )
    demo.add_argument(
        "--shards", type=int, default=2, help="--national: agency server processes (default 2)"
    )
    demo.set_defaults(run=_demo)

    serve = commands.add_parser(
        "serve",
        help="run the gateway against configured connectors",
        description="Run the gateway against configured connectors. Its settings are the"
        " CHILDLOOKUP_ variables (docs/deployment.md); an option given wins over its variable,"
        " and the --tls-* options over CHILDLOOKUP_SERVER_TLS.",
    )
    serve.add_argument(
        "--config", type=Path, help="connector config, TOML or JSON (or CHILDLOOKUP_SOURCES_FILE)"
    )
    serve.add_argument(
        "--host", help="the address to listen on (or CHILDLOOKUP_HOST; default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, help="the port to listen on (or CHILDLOOKUP_PORT; default 8000; 0: any)"
    )
    serve.add_argument(
        "--workers",
        type=_count(1, 64),
        default=1,
        help="gateway processes sharing the port (more than one needs CHILDLOOKUP_REDIS_URL)",
    )
    add_tls_arguments(serve, "portals")
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="print a dev bearer token for the demo gateway")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--org", required=True, help="organisation code, e.g. an ODS code")
    token.add_argument("--name", help="practitioner's name")
    token.add_argument(
        "--ttl",
        type=int,
        help="lifetime in seconds (default 8 hours, at most CHILDLOOKUP_TOKEN_MAX_LIFETIME_S)",
    )
    token.add_argument(
        "--state-dir",
        type=Path,
        help="where the dev key pair is (created if missing; default CHILDLOOKUP_STATE_DIR,"
        " else .childlookup)",
    )
    token.set_defaults(run=_token)

    synth = commands.add_parser("synth", help="write a seeded synthetic population")
    synth.add_argument("--seed", type=int, required=True)
    synth.add_argument("--children", type=int, required=True)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument(
        "--noise", choices=("none", "low", "medium", "high", "extreme"), default="medium"
    )
    add_national_arguments(synth)
    synth.set_defaults(run=_synth)

    add_tls_check(commands)

    connector = commands.add_parser("connector", help="agency connector commands")
    connector_commands = connector.add_subparsers(dest="connector_command", required=True)
    add_connector_commands(connector_commands)

    locator = commands.add_parser(
        "locator", help="the locator: which agencies hold a record about a child (keyed pseudonyms)"
    )
    add_locator_commands(locator.add_subparsers(dest="locator_command", required=True))

    policy = commands.add_parser("policy", help="policy officers' tools")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    ptest = policy_commands.add_parser("test", help="run every test_ rule (opa test semantics)")
    ptest.add_argument("directory", type=Path, nargs="?", default=Path("policies"))
    ptest.add_argument("-v", "--verbose", action="store_true")
    ptest.set_defaults(run=_policy_test)
    pexplain = policy_commands.add_parser(
        "explain", help="what a role sees of a child for a purpose, field by field, and why"
    )
    pexplain.add_argument("--role", required=True, help="e.g. health_visitor")
    pexplain.add_argument("--purpose", required=True, help="e.g. SAFEGUARDING_ENQUIRY")
    pexplain.add_argument("--shielded", action="store_true", help="the child is shielded")
    pexplain.add_argument("--restricted", action="store_true", help="a record is restricted")
    pexplain.add_argument(
        "--shield-unknown", action="store_true", help="a shield authority did not answer"
    )
    pexplain.add_argument(
        "--restriction-unknown",
        action="store_true",
        help="the source holding the NHS restricted flag did not answer",
    )
    pexplain.add_argument(
        "--sensitive", action="store_true", help="the record holds a sensitive involvement"
    )
    pexplain.add_argument(
        "--no-justification", action="store_true", help="the practitioner gave no justification"
    )
    pexplain.add_argument("--json", action="store_true", help="machine-readable output")
    pexplain.add_argument("--dir", type=Path, default=Path("policies"), help="policy directory")
    pexplain.set_defaults(run=_policy_explain)
    pdiff = policy_commands.add_parser(
        "diff", help="who gains or loses which field between two policy versions"
    )
    pdiff.add_argument("old", help="policy directory or git revision (e.g. HEAD~1)")
    pdiff.add_argument("new", help="policy directory or git revision")
    pdiff.add_argument(
        "--dir",
        type=Path,
        default=Path("policies"),
        help="the policy directory whose history a git revision names",
    )
    pdiff_format = pdiff.add_mutually_exclusive_group()
    pdiff_format.add_argument("--json", dest="output", action="store_const", const="json")
    pdiff_format.add_argument("--markdown", dest="output", action="store_const", const="markdown")
    pdiff.set_defaults(run=_policy_diff, output="text")
    pbundle = policy_commands.add_parser("bundle", help="write an OPA bundle (.tar.gz)")
    pbundle.add_argument("--out", type=Path, required=True, help="e.g. bundle.tar.gz")
    pbundle.add_argument("--dir", type=Path, default=Path("policies"), help="policy directory")
    pbundle.set_defaults(run=_policy_bundle)

    audit = commands.add_parser("audit", help="auditors' tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    averify = audit_commands.add_parser(
        "verify", help="check the audit log's hash chain and signed checkpoints"
    )
    averify.add_argument("--state-dir", type=Path, help="default: CHILDLOOKUP_STATE_DIR")
    averify.add_argument(
        "--witness",
        action="append",
        metavar="URL",
        help="also compare the log with the checkpoints this witness holds (its base URL;"
        " repeatable); fails if it cannot be read. The log is the one named"
        " CHILDLOOKUP_AUDIT_LOG_NAME (default CHILDLOOKUP_GATEWAY_ID)",
    )
    averify.add_argument(
        "--archive",
        type=Path,
        metavar="DIR",
        help="also verify every archived segment in DIR, and that they join up with each other"
        " and with the live log",
    )
    averify.set_defaults(run=_audit_verify)
    aarchive = audit_commands.add_parser(
        "archive",
        help="move the audit records before a cutoff into a segment file that still verifies, and"
        " the decision logs rotated before it (as the schema owner with PostgreSQL)",
    )
    aarchive.add_argument("--to", type=Path, required=True, metavar="DIR", help="the archive")
    cutoff = aarchive.add_mutually_exclusive_group()
    cutoff.add_argument("--before", type=_timestamp, help="ISO 8601 date or time, UTC if no zone")
    cutoff.add_argument(
        "--older-than-days",
        type=int,
        metavar="N",
        help="default: CHILDLOOKUP_AUDIT_ARCHIVE_AFTER_DAYS (90)",
    )
    aarchive.add_argument(
        "--max-records",
        type=int,
        default=DEFAULT_SEGMENT_RECORDS,
        metavar="N",
        help=f"records per segment, each deleted in its own transaction (default"
        f" {DEFAULT_SEGMENT_RECORDS}: on SQLite, short enough for lookups' audit writes to wait)",
    )
    aarchive.add_argument("--state-dir", type=Path, help="default: CHILDLOOKUP_STATE_DIR")
    aarchive.set_defaults(run=_audit_archive)
    aquery = audit_commands.add_parser("query", help="who looked at a child, or what a user did")
    achild = aquery.add_mutually_exclusive_group()
    achild.add_argument("--child", help="the child's NHS number (matched by its pseudonym)")
    achild.add_argument(
        "--child-upn", metavar="UPN", help="or the child's UPN, for a child with no NHS number"
    )
    aquery.add_argument("--user", help="the practitioner's subject, e.g. dev:RR8:Hana Visitor")
    aquery.add_argument("--since", type=_timestamp, help="ISO 8601 date or time, UTC if no zone")
    aquery.add_argument(
        "--limit", type=_count(1, MAX_QUERY_RECORDS), default=1000, help="default: 1000"
    )
    aquery.add_argument("--state-dir", type=Path, help="default: CHILDLOOKUP_STATE_DIR")
    aquery.set_defaults(run=_audit_query)
    aalerts = audit_commands.add_parser(
        "alerts",
        help=(
            "the alerts feed: break-glass overrides and refused attempts, and lookups refused at"
            " a usage limit (possible trawling): who, when, why (names no child)"
        ),
    )
    aalerts.add_argument("--since", type=_timestamp, help="ISO 8601 date or time")
    aalerts.add_argument(
        "--kind",
        action="append",
        metavar="KIND",
        help=(
            "only alerts of this kind (repeatable): BREAK_GLASS, BREAK_GLASS_REFUSED,"
            " RATE_LIMITED, ORGANISATION_RATE_LIMITED or DISTINCT_CHILDREN_CAP; default: every"
            " kind"
        ),
    )
    aalerts.add_argument(
        "--by-user",
        action="store_true",
        help="one line per user and kind: how many alerts, the first and the last, most first",
    )
    aalerts.add_argument("--state-dir", type=Path, help="default: CHILDLOOKUP_STATE_DIR")
    aalerts.set_defaults(run=_audit_alerts)

    notifications = commands.add_parser(
        "notifications",
        help="owner notifications in the outbox: those given up on, and sending them again",
    )
    notification_commands = notifications.add_subparsers(
        dest="notifications_command", required=True
    )
    nlist = notification_commands.add_parser(
        "list", help="notifications and where they stand (dead letters by default), no payload"
    )
    nlist.add_argument(
        "--state",
        action="append",
        choices=["DEAD", "PENDING", "DELIVERED"],
        help="only in this state (repeatable); default: DEAD",
    )
    nlist.add_argument("--source", help="only those for this agency (its source name)")
    nlist.add_argument("--state-dir", type=Path, help="default: CHILDLOOKUP_STATE_DIR")
    nlist.set_defaults(run=_notifications_list)
    nshow = notification_commands.add_parser(
        "show",
        help="one notification with the message the agency should have had (kept until"
        " delivered), to pass on by other means",
    )
    nshow.add_argument("message_id")
    nshow.add_argument("--state-dir", type=Path, help="default: CHILDLOOKUP_STATE_DIR")
    nshow.set_defaults(run=_notifications_show)
    nresend = notification_commands.add_parser(
        "resend",
        help="queue dead letters again once their agency's endpoint or key is mended: running"
        " gateways deliver them, attempts and age counted afresh",
    )
    nresend.add_argument("message_id", nargs="*", help="the dead letters to send again")
    nresend.add_argument("--all", action="store_true", help="every dead letter")
    nresend.add_argument("--source", help="only those for this agency (its source name)")
    nresend.add_argument("--state-dir", type=Path, help="default: CHILDLOOKUP_STATE_DIR")
    nresend.set_defaults(run=_notifications_resend)
    npassed = notification_commands.add_parser(
        "passed-on",
        help="close dead letters whose agency was told by other means and will not be sent them"
        " (it left the federation, its endpoint is not coming back): each payload erased, the row"
        " kept as the receipt, with how it was passed on, and each close recorded in the audit log"
        " (run with the gateways' environment: their checkpoint key signs)",
    )
    npassed.add_argument("message_id", nargs="+", help="the dead letters passed on")
    npassed.add_argument(
        "--how",
        required=True,
        help="who told whom at the agency, when and how (kept on the receipt and in the audit"
        " log; never the child)",
    )
    npassed.add_argument(
        "--by",
        required=True,
        help="your name, as your organisation knows you (the audit log's subject: operator:NAME)",
    )
    npassed.add_argument("--state-dir", type=Path, help="default: CHILDLOOKUP_STATE_DIR")
    npassed.set_defaults(run=_notifications_passed_on)

    db = commands.add_parser("db", help="the PostgreSQL audit database (CHILDLOOKUP_DATABASE_URL)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    dupgrade = db_commands.add_parser(
        "upgrade",
        help="create or migrate CHILDLOOKUP_DATABASE_SCHEMA to this version, as the schema's"
        " owner, before gateways of this version start (see gateway.audit.migrations)",
    )
    dupgrade.set_defaults(run=_db_upgrade)

    schema = commands.add_parser("schema", help="print, check or write schema.graphql")
    mode = schema.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if schema.graphql has drifted")
    mode.add_argument("--write", action="store_true", help="rewrite schema.graphql")
    mode.add_argument(
        "--breaking",
        action="store_true",
        help="list changes since the released schema; fail on an undeclared breaking one",
    )
    schema.set_defaults(run=_schema)

    portal = commands.add_parser("portal", help="the practitioners' portal served at /portal/")
    portal_commands = portal.add_subparsers(dest="portal_command", required=True)
    pmanifest = portal_commands.add_parser(
        "manifest",
        help="the trusted-documents manifest (Apollo format) of every operation the portal sends",
    )
    pmanifest_mode = pmanifest.add_mutually_exclusive_group()
    pmanifest_mode.add_argument(
        "--out", type=Path, help="write it here (portal/operations.json is the committed one)"
    )
    pmanifest_mode.add_argument(
        "--check", action="store_true", help="fail if portal/operations.json has drifted"
    )
    pmanifest.set_defaults(run=_portal_manifest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    return run_command(args, "childlookup")


if __name__ == "__main__":
    raise SystemExit(main())
