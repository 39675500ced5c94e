"""Comparing the log's checkpoints with a witness's listing: each way they can disagree is named,
and told apart from the others (tests/test_witness_e2e.py runs it against real witnesses)."""

import dataclasses
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.witness import SignedCheckpoint, WitnessedConflict, WitnessListing
from gateway.audit import CheckpointKeys
from gateway.audit.checkpoints import GENESIS
from gateway.audit.witness_check import compare
from tests.factories import CHECKPOINT_KEY

URL = "http://witness.example.test"
WHEN = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def chain(keys=CHECKPOINT_KEY, heads=("a", "b", "c")):
    """Three checkpoints, at records 10, 20 and 30, each naming the one before."""
    made, prev = [], GENESIS
    for n, head in enumerate(heads, start=1):
        made.append(keys.sign(n * 10, n * 10, head * 64, WHEN, prev))
        prev = made[-1].digest()
    return made


def listing(checkpoints, conflicts=()):
    signed = [SignedCheckpoint(**dataclasses.asdict(c)) for c in checkpoints]
    first = signed[0].seq if signed else None
    return WitnessListing(
        log="childlookup-gateway", checkpoints=signed, first_seen_seq=first, conflicts=conflicts
    )


def test_a_witness_holding_what_the_log_holds_agrees():
    log = chain()
    verdict = compare(URL, log, listing(log[1:]), CHECKPOINT_KEY)
    assert verdict.ok
    assert verdict.message == f"agrees with witness {URL}: 2 checkpoints, latest #30"


def test_a_log_newer_than_its_witness_still_agrees():
    log = chain()
    assert compare(URL, log, listing(log[:2]), CHECKPOINT_KEY).ok


def test_a_witnessed_checkpoint_the_log_lacks_is_named():
    log = chain()
    verdict = compare(URL, log[:1], listing(log), CHECKPOINT_KEY)
    assert not verdict.ok
    assert verdict.message == (
        f"audit log DIVERGES from witness {URL} at checkpoint #20 (20 records,"
        f" {log[1].at}): the log has no such checkpoint"
    )


def test_a_witnessed_checkpoint_the_log_holds_otherwise_is_named():
    log, rewritten = chain(), chain(heads=("a", "f", "c"))
    verdict = compare(URL, rewritten, listing(log), CHECKPOINT_KEY)
    assert not verdict.ok
    assert "at checkpoint #20 " in verdict.message
    assert verdict.message.endswith("the log's checkpoint differs")


def test_a_witness_holding_a_checkpoint_the_gateway_never_signed_is_told_apart():
    log = chain()
    forged = chain(CheckpointKeys.signing_with(Ed25519PrivateKey.generate()))
    verdict = compare(URL, log, listing(forged), CHECKPOINT_KEY)
    assert not verdict.ok
    assert f"witness {URL} holds a FORGED checkpoint #10" in verdict.message
    assert "DIVERGES" not in verdict.message


def test_conflicts_a_witness_recorded_fail_the_comparison():
    log, rewritten = chain(), chain(heads=("a", "f", "c"))
    conflict = WitnessedConflict(
        received_at="2026-11-21T12:00:01.000000+00:00",
        held=SignedCheckpoint(**dataclasses.asdict(log[1])),
        offered=SignedCheckpoint(**dataclasses.asdict(rewritten[1])),
    )
    verdict = compare(URL, log, listing(log, [conflict]), CHECKPOINT_KEY)
    assert not verdict.ok
    assert f"witness {URL} recorded 1 conflicting checkpoints, the first #20" in verdict.message


def test_a_witness_holding_nothing_of_the_log_proves_nothing():
    verdict = compare(URL, chain(), listing([]), CHECKPOINT_KEY)
    assert not verdict.ok
    assert "holds no checkpoint of log childlookup-gateway" in verdict.message


def test_witnessed_checkpoints_before_the_live_log_are_archived_not_compared():
    log = chain()
    verdict = compare(URL, log[1:], listing(log), CHECKPOINT_KEY, covers_from=20)
    assert verdict.ok
    assert verdict.message == (
        f"agrees with witness {URL}: 2 checkpoints, latest #30 (1 archived, not compared)"
    )
