"""Identifiers for a synthetic population, each unique within it and valid by its own rules.

NHS numbers come only from 9000000000-9999999999, the range never issued to real people, and carry
a correct modulus-11 check digit, so the gateway's validation treats them exactly as real ones while
no generated record can ever name a real child.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from connectors.check_digits import nhs_check_digit, upn_check_letter
from connectors.synthetic.places import LA_CODE

_MAX_DRAWS: Final = 10_000


class IdentifierIssuer:
    """Draws identifiers at random and never issues the same one twice in one population.

    Random rather than sequential, so that an identifier says nothing about when or in what order a
    child was generated; the formats never overlap, so one register of issued values serves all.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._issued: set[str] = set()

    def nhs_number(self) -> str:
        return self._unique(self._draw_nhs_number)

    def upn(self, establishment: str, year_allocated: int, local_authority: str = LA_CODE) -> str:
        """A UPN as a school would allocate it: the three-digit DfE LA number (the area's unless
        given), DfE establishment number, two-digit year and a serial, behind the check letter."""
        rng = self._rng
        prefix = f"{local_authority}{establishment}{year_allocated % 100:02d}"

        def draw() -> str:
            digits = f"{prefix}{rng.randrange(1000):03d}"
            return upn_check_letter(digits) + digits

        return self._unique(draw)

    def establishment(self, phase_digit: int) -> str:
        """A four-digit DfE establishment number; by convention 2xxx is primary, 4xxx secondary."""
        return self._unique(lambda: f"{phase_digit}{self._rng.randrange(1000):03d}")

    def urn(self) -> str:
        return self._unique(lambda: str(self._rng.randint(100_000, 999_999)))

    def ods_code(self) -> str:
        """A GP practice code in the shape of Leeds practices (B86 then three digits)."""
        return self._unique(lambda: f"B86{self._rng.randrange(1000):03d}")

    def _draw_nhs_number(self) -> str | None:
        first_nine = str(self._rng.randint(900_000_000, 999_999_999))
        check = nhs_check_digit(first_nine)
        return None if check is None else f"{first_nine}{check}"

    def _unique(self, draw: Callable[[], str | None]) -> str:
        """Redraw until the value is new; a space this full means the caller asked for more than
        the format holds, which must fail loudly rather than loop for ever."""
        for _ in range(_MAX_DRAWS):
            value = draw()
            if value is not None and value not in self._issued:
                self._issued.add(value)
                return value
        raise RuntimeError("identifier space exhausted: too many values of one kind requested")
