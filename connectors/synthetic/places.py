"""Where synthetic people live and how they are reached: addresses, postcodes and phone numbers.

The population lives in one local authority (Leeds, LA code 383) so that one social care connector
is plausibly responsible for every child in it, and the districts carry their real outward codes so
that postcodes look like the ones a practitioner types. The inward part is random, so a generated
postcode may or may not exist; it is never tied to a real household.

Phone numbers come only from the ranges Ofcom reserves for drama (0113 496 0000-0999 for Leeds,
07700 900000-900999 for mobiles): a generated number can never ring a real person.
"""

from __future__ import annotations

import random
from typing import Final

from connectors.protocol import Address

TOWN: Final = "Leeds"
LA_CODE: Final = "383"

_DISTRICTS: Final = (
    ("City Centre", "LS1"),
    ("Woodhouse", "LS2"),
    ("Burley", "LS4"),
    ("Kirkstall", "LS5"),
    ("Headingley", "LS6"),
    ("Chapeltown", "LS7"),
    ("Roundhay", "LS8"),
    ("Harehills", "LS9"),
    ("Hunslet", "LS10"),
    ("Beeston", "LS11"),
    ("Armley", "LS12"),
    ("Bramley", "LS13"),
    ("Seacroft", "LS14"),
    ("Cross Gates", "LS15"),
    ("Adel", "LS16"),
    ("Moortown", "LS17"),
    ("Horsforth", "LS18"),
    ("Yeadon", "LS19"),
    ("Guiseley", "LS20"),
    ("Otley", "LS21"),
    ("Wetherby", "LS22"),
    ("Garforth", "LS25"),
    ("Rothwell", "LS26"),
    ("Morley", "LS27"),
    ("Pudsey", "LS28"),
)

STREET_NAMES: Final = (
    "Church", "Station", "Park", "Victoria", "Mill", "School", "Chapel", "Manor", "Oak", "Elm",
    "Beech", "Ash", "Willow", "Cedar", "Holly", "Meadow", "Grange", "Orchard", "Springfield",
    "Highfield", "Westfield", "Brookfield", "Moor", "Hill", "Valley", "Queen", "King", "Albert",
    "Alexandra", "Granville", "Clarence", "Cavendish", "Stanley", "Wellington", "Nelson", "Windsor",
    "Belmont", "Ashwood", "Fernbank", "Hawthorn", "Larch", "Rowan", "Sycamore", "Poplar",
    "Chestnut", "Lime", "Laurel", "Heather", "Primrose", "Bluebell", "Foxglove", "Kingfisher",
    "Heron", "Falcon", "Thornhill", "Greenside", "Woodside", "Lakeside", "Riverside", "Hillside",
    "Broadway", "Fairfield", "Sandford", "Stainbeck", "Shaftesbury", "Tennyson", "Wordsworth",
    "Brontë",
)  # fmt: skip

_STREET_KINDS: Final = (
    "Road", "Street", "Lane", "Avenue", "Close", "Crescent", "Drive", "Grove", "Terrace", "Way",
    "Gardens", "Mount", "View", "Place",
)  # fmt: skip

_INWARD_LETTERS: Final = "ABDEFGHJLNPQRSTUWXYZ"  # inward codes never use C, I, K, M, O or V


def _postcode(rng: random.Random, outward: str) -> str:
    """A valid-format postcode in the given outward code."""
    return (
        f"{outward} {rng.randrange(10)}{rng.choice(_INWARD_LETTERS)}{rng.choice(_INWARD_LETTERS)}"
    )


def _street(rng: random.Random) -> str:
    return f"{rng.choice(STREET_NAMES)} {rng.choice(_STREET_KINDS)}"


def home_address(rng: random.Random) -> Address:
    """A house or flat in a random district of the area."""
    district, outward = rng.choice(_DISTRICTS)
    return address_in(rng, outward, district, TOWN)


def address_in(rng: random.Random, outward: str, locality: str, town: str) -> Address:
    """A house or flat in the given postal district; about one home in six is a flat, as in a
    city."""
    first_line = f"{rng.randint(1, 180)} {_street(rng)}"
    if rng.random() < 0.16:
        first_line = f"Flat {rng.randint(1, 24)}, {first_line}"
    return Address(lines=[first_line, locality, town], postcode=_postcode(rng, outward))


_ABBREVIATED: Final = {
    "Road": "Rd", "Street": "St", "Lane": "Ln", "Avenue": "Ave", "Close": "Cl",
    "Crescent": "Cres", "Drive": "Dr", "Grove": "Gro", "Terrace": "Ter", "Gardens": "Gdns",
    "Place": "Pl",
}  # fmt: skip


def rewritten(rng: random.Random, address: Address) -> Address:
    """The same home as another agency's system writes it: the street kind abbreviated, the flat
    on a line of its own, the district left out, or in capitals - the ways one house is spelt."""
    first, *rest = address.lines
    way = rng.choice(("capitals", "abbreviated", "flat_apart", "no_district"))
    lines = [line.upper() for line in address.lines]
    if way == "abbreviated":
        lines = [" ".join(_ABBREVIATED.get(w, w) for w in first.split(" ")), *rest]
    elif way == "flat_apart" and first.startswith("Flat "):
        flat, _, street = first.partition(", ")
        lines = [flat, street, *rest]
    elif way == "no_district":
        lines = [first, *rest[1:]]
    if lines == address.lines:
        lines = [line.upper() for line in address.lines]
    return address.model_copy(update={"lines": lines})


def landline(rng: random.Random) -> str:
    return f"0113 496 {rng.randrange(1000):04d}"


def mobile(rng: random.Random) -> str:
    return f"07700 900{rng.randrange(1000):03d}"
