"""Ages and the English school year, which decide who holds a record about a child and since when.

A school year runs September to August, so a child's school start depends on the month they were
born, not only their age: getting this wrong would put a child in the wrong school phase, and the
record linkage tests would then be measuring an impossible population.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

OLDEST_AGE: Final = 17
"""Synthetic children are aged 0 to this on the day they are generated for."""


def age(born: date, on: date) -> int:
    """Completed years, as every agency counts them."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def years_later(day: date, years: int) -> date:
    """The same day `years` later (earlier when negative); 29 February may become the 28th."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def earliest_birthday(today: date) -> date:
    """The earliest date of birth of a child aged OLDEST_AGE or younger on `today`."""
    return years_later(today, -(OLDEST_AGE + 1)) + timedelta(days=1)


def primary_start(born: date, today: date) -> date:
    """The September a child started primary school: reception, or the nursery class for a
    four-year-old not yet of reception age."""
    this_september = date(today.year - (today.month < 9), 9, 1)
    return min(date(_cohort(born) + 4, 9, 1), this_september)


def secondary_start(born: date) -> date:
    """The September a child starts (or started) Year 7."""
    return date(_cohort(born) + 11, 9, 1)


def _cohort(born: date) -> int:
    """The school cohort, named by the calendar year its youngest members are born in."""
    return born.year + (born.month >= 9)
