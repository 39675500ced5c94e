"""Key files made once, whoever makes them: gateways sharing a state directory (`serve --workers
N`, or several started together) each create a missing key at start, and must end up with one
key, whole, that all of them use. Real processes, started to race on one directory."""

from __future__ import annotations

import multiprocessing
import stat
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from connectors.trust import (
    ensure_key_pair,
    load_private_key,
    load_public_key,
    public_pem,
    write_once,
)
from gateway.audit.checkpoints import (
    ensure_checkpoint_key,
    load_public_keys,
    public_key_path,
)
from gateway.audit.checkpoints import load_private_key as load_checkpoint_key

RACERS = 8
ROUNDS = 12


def _make_keys(directory: str, at: float) -> tuple[bytes, bytes]:
    """In a process of its own: wait for the common start, make both kinds of key, and say which
    public keys this process would sign with."""
    time.sleep(max(0.0, at - time.time()))
    keys = Path(directory)
    request_key = ensure_key_pair(keys / "request.pem", keys / "request.pub.pem")
    checkpoint_key = ensure_checkpoint_key(keys / "audit-checkpoint.pem")
    return (
        public_pem(load_private_key(request_key).public_key()),
        public_pem(load_checkpoint_key(checkpoint_key).public_key()),
    )


def test_processes_starting_together_make_one_key_of_each_kind_and_all_use_it(tmp_path):
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(RACERS, mp_context=spawn) as pool:
        list(pool.map(time.sleep, [0.0] * RACERS))  # every process up and imported
        # Each round a fresh directory, every process making its keys at the same instant: the
        # window between finding no key and writing one is tens of microseconds, so one round
        # may not hit it; several nearly always do (the check-then-write code failed here).
        for round_ in range(ROUNDS):
            keys = tmp_path / f"keys-{round_}"
            at = time.time() + 0.2
            seen = list(pool.map(_make_keys, [str(keys)] * RACERS, [at] * RACERS))
            _one_whole_key_of_each_kind(keys, seen)


def _one_whole_key_of_each_kind(keys: Path, seen: list[tuple[bytes, bytes]]) -> None:
    assert len(set(seen)) == 1, "the processes signed with different keys"
    request_public, checkpoint_public = seen[0]
    # The public halves on disk are the private keys' own, not another process's.
    assert public_pem(load_public_key(keys / "request.pub.pem")) == request_public
    checkpoint_public_path = public_key_path(keys / "audit-checkpoint.pem")
    assert [public_pem(k) for k in load_public_keys(checkpoint_public_path)] == [checkpoint_public]
    for private in ("request.pem", "audit-checkpoint.pem"):
        assert stat.S_IMODE((keys / private).stat().st_mode) == 0o600
    assert sorted(p.name for p in keys.iterdir()) == [
        "audit-checkpoint.pem",
        "audit-checkpoint.pub.pem",
        "request.pem",
        "request.pub.pem",
    ]  # nothing staged left behind


def test_a_file_already_there_is_kept_and_a_missing_public_half_is_made_from_the_private_key(
    tmp_path,
):
    assert write_once(tmp_path / "f", b"first") is True
    assert write_once(tmp_path / "f", b"second") is False
    assert (tmp_path / "f").read_bytes() == b"first"

    private = ensure_key_pair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    before = private.read_bytes()
    (tmp_path / "k.pub.pem").unlink()
    ensure_key_pair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    assert private.read_bytes() == before  # the key was not replaced
    assert public_pem(load_public_key(tmp_path / "k.pub.pem")) == public_pem(
        load_private_key(private).public_key()
    )
    assert stat.S_IMODE((tmp_path / "k.pub.pem").stat().st_mode) == 0o644
