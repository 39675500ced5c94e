"""`childlookup locator ...`: serve the locator, see its coverage, retire a key, make key files.

Every command but `keygen` reads the locator's settings (CHILDLOOKUP_LOCATOR_*), so `status` and
`retire-key` act on the store the running locator uses. Heavy imports wait for the command that
needs them: `childlookup --help` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.cli import add_tls_arguments

if TYPE_CHECKING:
    from locator.settings import Settings
    from locator.store import Coverage, Store


def _settings(**overrides: object) -> Settings:
    from locator.settings import Settings

    given = {name: value for name, value in overrides.items() if value is not None}
    return Settings().model_copy(update=given) if given else Settings()


def _store(settings: Settings) -> Store:
    from locator.store import Store

    if settings.database_url is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    return Store.open(
        settings.store_url,
        schema=settings.database_schema,
        key_versions=settings.key_versions,
    )


def _serve(args: argparse.Namespace) -> int:
    from connectors.cli import serving_tls
    from connectors.serving import ServedApp, bind_socket, run, serve_all
    from locator.app import app_from_settings

    settings = _settings(host=args.host, port=args.port)
    tls = serving_tls(args)
    app = app_from_settings(settings)
    served = ServedApp("locator", app, bind_socket(settings.host, settings.port), tls)
    print(f"locator {settings.locator_id} on {served.url} ({settings.mode.value})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        run(serve_all([served], log_level="info"))
    return 0


async def _coverage(settings: Settings) -> Coverage:
    store = _store(settings)
    try:
        await store.create()
        return await store.coverage()
    finally:
        await store.close()


def _status(args: argparse.Namespace) -> int:
    coverage = asyncio.run(_coverage(_settings()))
    if args.json:
        print(json.dumps(asdict(coverage), indent=2))
        return 0
    print(f"{coverage.agencies} agencies publishing")
    for version in coverage.versions:
        share = version.agencies / coverage.agencies if coverage.agencies else 0.0
        state = " (retired)" if version.retired else ""
        print(
            f"  {version.version}{state}: {version.agencies} agencies ({share:.0%}),"
            f" {version.holdings} holdings"
        )
    return 0


async def _retire(settings: Settings, version: str, force: bool) -> tuple[int, str | None]:
    """Retire `version` unless an agency holds under it and under no other live version yet
    (then return the reason, naming them, and retire nothing) - retiring it early would hide
    their children from lookups until they re-publish."""
    store = _store(settings)
    try:
        await store.create()
        stranded = [] if force else await store.held_only_under(version)
        if stranded:
            named = ", ".join(stranded[:10]) + (" and more" if len(stranded) > 10 else "")
            return 0, (
                f"{len(stranded)} agencies hold under {version} and under no other live key"
                f" version yet ({named}); wait for their connectors to re-publish, or pass --force"
            )
        return await store.retire(version), None
    finally:
        await store.close()


def _retire_key(args: argparse.Namespace) -> int:
    from locator.store import StoreRefusal

    try:
        deleted, refused = asyncio.run(_retire(_settings(), args.version, args.force))
    except StoreRefusal as refusal:
        raise ValueError(str(refusal)) from None
    if refused is not None:
        raise ValueError(f"not retiring {args.version}: {refused}")
    print(f"retired {args.version}: {deleted} holdings deleted; remove it from the key files")
    return 0


async def _remove(settings: Settings, agency: str) -> int:
    store = _store(settings)
    try:
        await store.create()
        return await store.remove_agency(agency)
    finally:
        await store.close()


def _remove_agency(args: argparse.Namespace) -> int:
    """Delete what an agency taken out of the agencies file published (its key compromised, say):
    locates no longer name it, but its holdings stay until removed, and keep `retire-key`
    refusing for it."""
    from locator.settings import load_agencies
    from locator.store import StoreRefusal

    settings = _settings()
    registered = () if settings.agencies_file is None else load_agencies(settings.agencies_file)
    if any(agency.name == args.agency for agency in registered):
        raise ValueError(
            f"{args.agency} is in the agencies file: take it out first, or it may publish again"
        )
    try:
        removed = asyncio.run(_remove(settings, args.agency))
    except StoreRefusal as refusal:
        raise ValueError(str(refusal)) from None
    print(f"removed {args.agency}: {removed} holdings deleted")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from connectors.locator import load_pseudonym_keys, new_pseudonym_key, write_pseudonym_keys

    path: Path = args.file
    if args.add:
        keys = load_pseudonym_keys(path)
        if args.version in {key.version for key in keys}:
            raise ValueError(f"{path} has a key {args.version} already")
        write_pseudonym_keys(path, (new_pseudonym_key(args.version), *keys))
        print(
            f"added {args.version} to {path} as the current key; give the file to every"
            " connector and gateway, then let connectors re-publish"
        )
        return 0
    if path.exists():
        raise ValueError(f"{path} exists already; a key file is never overwritten (use --add)")
    write_pseudonym_keys(path, (new_pseudonym_key(args.version),))
    print(f"pseudonym key {args.version} in {path}; share it with connectors and gateways only")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the locator commands on a parser's subcommands."""
    serve = commands.add_parser("serve", help="run the locator (settings: CHILDLOOKUP_LOCATOR_*)")
    serve.add_argument("--host", help="default CHILDLOOKUP_LOCATOR_HOST, else 127.0.0.1")
    serve.add_argument("--port", type=int, help="default CHILDLOOKUP_LOCATOR_PORT, else 8700")
    add_tls_arguments(serve, None)
    serve.set_defaults(run=_serve)

    status = commands.add_parser(
        "status", help="agencies and holdings per pseudonym key version (for key rotation)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)

    retire = commands.add_parser(
        "retire-key",
        help="delete an old key version's holdings and refuse its publications, once every"
        " agency holding under it holds under another live version",
    )
    retire.add_argument("version", help="the key version to retire, e.g. 2026-05")
    retire.add_argument(
        "--force", action="store_true", help="retire even if an agency holds under it alone"
    )
    retire.set_defaults(run=_retire_key)

    remove = commands.add_parser(
        "remove-agency",
        help="delete what an agency taken out of the agencies file published",
    )
    remove.add_argument("agency", help="the agency's name, as it published")
    remove.set_defaults(run=_remove_agency)

    keygen = commands.add_parser(
        "keygen", help="make a pseudonym key file for connectors and gateways (never the locator)"
    )
    keygen.add_argument("file", type=Path, help="the key file (JSON), e.g. pseudonym-keys.json")
    keygen.add_argument("--version", required=True, help="the key's version, e.g. 2026-11")
    keygen.add_argument(
        "--add", action="store_true", help="add a new current version to an existing file"
    )
    keygen.set_defaults(run=_keygen)
