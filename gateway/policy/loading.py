"""Choosing and building the policy engine the gateway serves with."""

from __future__ import annotations

from pathlib import Path

from gateway.config import Settings
from gateway.policy.engine import PolicyEngine, RegoPolicyEngine
from gateway.policy.memo import MemoisedPolicyEngine
from gateway.policy.snapshot import fingerprint, read_policy_files


def load_engine(directory: Path) -> PolicyEngine:
    """Compile a policy directory into the in-process engine, answers remembered per input.

    The revision names the manifest's revision and the exact content, so an audit record
    identifies the rules that decided even when someone forgot to bump the manifest.
    """
    files = read_policy_files(directory)
    engine = RegoPolicyEngine.from_directory(directory)
    return MemoisedPolicyEngine(engine, revision=f"{engine.revision}@{fingerprint(files)[:12]}")


def policy_engine_from_settings(settings: Settings) -> PolicyEngine:
    """An OPA server's answers when `opa_url` is set, else the bundle in `policy_dir` in-process.

    The OPA engine is imported only when asked for, so the in-process gateway never loads aiohttp.
    Its answers are not remembered: the server may switch bundles underneath the gateway.
    """
    if settings.opa_url is not None:
        from gateway.policy.opa import OpaServerPolicyEngine

        return OpaServerPolicyEngine(settings.opa_url, settings.opa_timeout_ms / 1000)
    return load_engine(settings.policy_dir)
