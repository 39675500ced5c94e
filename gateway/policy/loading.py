"""Choosing and building the policy engine the gateway serves with."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from gateway.config import Mode, Settings
from gateway.policy.engine import PolicyEngine, RegoPolicyEngine
from gateway.policy.errors import PolicyError
from gateway.policy.memo import MemoisedPolicyEngine
from gateway.policy.snapshot import fingerprint, read_policy_files
from gateway.policy.vetting import tested_version

_READ_ATTEMPTS: Final = 5


def load_engine(directory: Path) -> MemoisedPolicyEngine:
    """Compile a policy directory into the in-process engine, answers remembered per input.

    The revision names the manifest's revision and the exact content, so an audit record
    identifies the rules that decided even when someone forgot to bump the manifest. The
    directory is read before and after compiling: a version that changed meanwhile (a deploy
    copying files in) is read again, so the revision (and `content`, the whole fingerprint the
    live reloader starts from) always names what was compiled.
    """
    for _ in range(_READ_ATTEMPTS):
        version = fingerprint(read_policy_files(directory))
        engine = RegoPolicyEngine.from_directory(directory)
        if fingerprint(read_policy_files(directory)) == version:
            return MemoisedPolicyEngine(
                engine, revision=f"{engine.revision}@{version[:12]}", content=version
            )
    raise PolicyError(f"The policy in {directory} kept changing while it was read.")


def policy_engine_from_settings(settings: Settings) -> PolicyEngine:
    """An OPA server's answers when `opa_url` is set, else the bundle in `policy_dir` in-process:
    in production mode only once its own tests pass (gateway.policy.vetting), since nothing else
    stops a version the live reloader rejected, still in the directory, from going live when the
    gateway restarts. In dev mode they are not run: the demo and tests start in a second or two.

    The OPA engine is imported only when asked for, so the in-process gateway never loads aiohttp.
    Its answers are not remembered: the server may switch bundles underneath the gateway.
    """
    if settings.opa_url is not None:
        from gateway.policy.opa import OpaServerPolicyEngine

        return OpaServerPolicyEngine(settings.opa_url, settings.opa_timeout_ms / 1000)
    engine = load_engine(settings.policy_dir)
    if settings.mode is Mode.PRODUCTION and engine.content != tested_version(
        settings.policy_dir, settings.policy_vet_max_bytes
    ):
        raise PolicyError("it changed while the gateway started; start it once it is in place")
    return engine
