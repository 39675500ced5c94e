"""The one read query both audit stores answer alike: records by child, user or time."""

from __future__ import annotations

from collections.abc import Sequence


def records_query(
    *, child_ref: str | None, subject: str | None, since: object | None, limit: int
) -> tuple[str, Sequence[object]]:
    """`SELECT body ...` with `%s` placeholders and its parameters, oldest first; `since` is given
    in the form the store's driver compares times in."""
    conditions = [
        (column, value)
        for column, value in (
            ("child_ref = %s", child_ref),
            ("subject = %s", subject),
            ("at >= %s", since),
        )
        if value is not None
    ]
    statement = "SELECT body FROM audit_log"
    if conditions:
        statement += " WHERE " + " AND ".join(column for column, _ in conditions)
    return statement + " ORDER BY seq LIMIT %s", (*(value for _, value in conditions), limit)
