"""The bearer tokens Prometheus may scrape /metrics with, from the settings or from a file.

A token in `CHILDLOOKUP_METRICS_TOKEN` is read once: changing it takes a restart, and the
scraper and the gateways change together. `CHILDLOOKUP_METRICS_TOKEN_FILE` holds one token a line
and is read again whenever it changes (its time, size or inode, looked at on each scrape, as a
secret mounted by an orchestrator is replaced), so a token is rotated with no restart and no
failed scrape: add the new one, move the scraper to it, remove the old one.

A file that cannot be read, or holds a line too short to be a token, stops start-up with what is
wrong; after a change it leaves no token accepted - a scrape is refused rather than let in on a
token the operator may have meant to withdraw - and says so (`metrics_tokens_unusable`) until the
file is fixed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

MIN_LENGTH: Final = 32

_logger = logging.getLogger("childlookup.gateway")


Tokens = Callable[[], tuple[str, ...] | None]
"""The tokens a scrape may present now; None when none is configured."""


def scrape_tokens(token: str | None, token_file: Path | None) -> Tokens:
    """From CHILDLOOKUP_METRICS_TOKEN or CHILDLOOKUP_METRICS_TOKEN_FILE (see
    gateway.metrics.scrape_access). Raises ValueError if the file cannot be used."""
    if token_file is not None:
        return TokenFile(token_file).tokens
    fixed = None if token is None else (token,)
    return lambda: fixed


class TokenFile:
    """The tokens in a file, one a line (blank lines ignored), as of its last change."""

    def __init__(self, path: Path) -> None:
        """Raises ValueError, naming the file and the fault, if it cannot be used now."""
        self._path = path
        self._stamp = _stamp(path)
        self._tokens = _read(path)

    def tokens(self) -> tuple[str, ...]:
        """The tokens a scraper may present now (none while the file is unusable)."""
        stamp = _stamp(self._path)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._tokens = _read(self._path)
            except ValueError as error:
                self._tokens = ()
                _logger.error(
                    "metrics token file unusable: every scrape refused",
                    extra={"event": "metrics_tokens_unusable", "context": {"reason": str(error)}},
                )
        return self._tokens


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


def _read(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"metrics token file {path} cannot be read: {error}") from error
    tokens = tuple(line.strip() for line in lines if line.strip())
    for number, line in enumerate(lines, start=1):
        if line.strip() and len(line.strip()) < MIN_LENGTH:
            raise ValueError(
                f"metrics token file {path}, line {number}: a token is at least {MIN_LENGTH}"
                " characters"
            )
    if not tokens:
        raise ValueError(f"metrics token file {path} holds no token")
    return tokens
