"""The days a FHIR date or dateTime may mean.

FHIR allows a date given only to the year ("2024") or the month ("2024-05"), and fhir.resources
keeps such a value as text. A period bound given that way is not one day but a span of them: a
plan that "started in 2026" may or may not have started by today. Comparing it as a day - or
failing on it, as comparing text with a date did (the lookup INTERNAL) - would be a guess; the
callers here say "unknown" where today falls within the span.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime
from typing import Final

from connectors.backend import ENGLAND

_PARTIAL: Final = re.compile(r"(\d{4})(?:-(\d{2}))?")

ANY_DAY: Final = (date.min, date.max)
"""What a bound that cannot be read at all may mean."""


def day_span(moment: date | datetime | str | None) -> tuple[date, date] | None:
    """The first and last day `moment` may mean: a date its own day, a dateTime the day it falls
    on in England (the day plans are judged against, `today_in_england`: 23:30Z in summer is
    the next day there, and the same moment written 00:30+01:00 must not be another day); a year
    or a month every day of it; anything unreadable `ANY_DAY`. None when there is no moment."""
    if moment is None:
        return None
    if isinstance(moment, datetime):
        day = moment.astimezone(ENGLAND).date() if moment.tzinfo is not None else moment.date()
        return day, day
    if isinstance(moment, date):
        return moment, moment
    partial = _PARTIAL.fullmatch(str(moment))
    if partial is None:
        return ANY_DAY
    year, month = int(partial.group(1)), partial.group(2)
    if month is None:
        return date(year, 1, 1), date(year, 12, 31)
    if not 1 <= int(month) <= 12 or year < 1:
        return ANY_DAY
    last = calendar.monthrange(year, int(month))[1]
    return date(year, int(month), 1), date(year, int(month), last)
