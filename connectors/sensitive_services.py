"""The sensitive services: kinds of service whose involvement is brokered whether or not the agency
that holds it marked it `sensitive`.

DOMAIN.md: for sexual health, mental health and substance misuse, ordinary users never see the
provider's name or contact details - contact is brokered. Resting that on every agency marking
every such involvement let one that did not (a local authority listing "CAMHS" unmarked) show the
provider. So the SDK's minimise and the gateway's decide stage both treat an involvement whose
`service`, `organisation` or practitioner's `role` names one of these as sensitive: one
definition, here, shared by agencies' connectors and the gateway.

A service matches when its words contain a term's words in order, compared after folding case,
accents, punctuation and spacing ("Tier 3 CAMHS", "Child & Adolescent Mental-Health Services" and
"camhs" all match; "Health visiting" does not). Words, not letters: "GUM" is not found in
"Gumtree". To extend the vocabulary, add a term to its category in `VOCABULARY`; the change
reaches every connector built on the SDK and the gateway alike. A term is only ever added: a
false match brokers a service that need not be, a missed one shows a provider.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Final

from connectors.protocol import ConnectorRecord, Involvement

VOCABULARY: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "mental health": (
            "mental health",  # also "Child and Adolescent Mental Health Service(s)"
            "camhs",
            "cypmhs",  # children and young people's mental health services
            "psychiatry",
            "psychiatric",
            "eating disorder",
            "eating disorders",
            "talking therapies",
            "iapt",  # improving access to psychological therapies, now NHS Talking Therapies
            "psychological therapies",
            "psychological therapy",
            "psychotherapy",
            "psychiatrist",
            "psychosis",  # "Early intervention in psychosis"
            "eip",
            "crisis team",  # mental health crisis (resolution) team
            "crisis resolution",
            "home treatment team",
            "emotional wellbeing",  # CAMHS as many councils name it
            "emotional health",
            "mhst",  # mental health support team (in schools)
            "kooth",
        ),
        "sexual health": (
            "sexual health",  # also "sexual and reproductive health"
            "reproductive health",
            "gum",  # genitourinary medicine
            "genitourinary",
            "genito urinary",
            "contraception",
            "contraceptive",
            "family planning",
            "sti",
            "sexually transmitted",
            "hiv",
            "termination of pregnancy",
            "abortion",
            "brook",  # the young people's sexual health charity
            "cash",  # contraception and sexual health
            "chlamydia",
            "c card",  # condom distribution scheme
            "pregnancy advisory",
            "bpas",
            "sarc",  # sexual assault referral centre
            "sexual assault referral",
        ),
        "substance misuse": (
            "substance misuse",
            "substance use",
            "substance abuse",
            "drug",  # also "drug and alcohol", "young people's drug service"
            "drugs",
            "alcohol",
            "addiction",
            "addictions",
            "needle exchange",
            "harm reduction",
            # Providers commissioned as the area's drug and alcohol service, named as such:
            "forward leeds",
            "change grow live",
            "cgl",
            "we are with you",
            "addaction",
            "turning point",
        ),
    }
)
"""Terms by category, each as the words of a service name would read after folding."""


def _words(text: str) -> tuple[str, ...]:
    """`text` as lower-case words without accents: any run of characters that are not letters or
    digits separates two words, and "&" reads as "and"."""
    decomposed = unicodedata.normalize("NFKD", text.replace("&", " and "))
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return tuple("".join(c if c.isalnum() else " " for c in folded).split())


_TERMS: Final = frozenset(_words(term) for terms in VOCABULARY.values() for term in terms)
_TERM_LENGTHS: Final = tuple(sorted({len(term) for term in _TERMS}))


def is_sensitive_service(service: str | None) -> bool:
    """Whether `service` names a sensitive service (a term of `VOCABULARY`)."""
    return service is not None and _names_a_term(service)


@lru_cache(maxsize=4096)
def _names_a_term(service: str) -> bool:
    """Remembered per name: agencies use few names, and minimise runs for every record of every
    lookup."""
    words = _words(service)
    return any(
        words[start : start + length] in _TERMS
        for start in range(len(words))
        for length in _TERM_LENGTHS
    )


def as_marked(involvement: Involvement) -> Involvement:
    """`involvement`, marked sensitive if it is in a sensitive service; else itself.

    Judged by its organisation and practitioner's role as well as its service: "Young people's
    service" at "Forward Leeds", or "Counselling" by a "CAMHS nurse", shows a sensitive provider
    just the same, and the provider is what marking hides."""
    if involvement.sensitive or not _in_sensitive_service(involvement):
        return involvement
    return involvement.model_copy(update={"sensitive": True})


def _in_sensitive_service(involvement: Involvement) -> bool:
    practitioner = involvement.practitioner
    return (
        is_sensitive_service(involvement.service)
        or is_sensitive_service(involvement.organisation)
        or (practitioner is not None and is_sensitive_service(practitioner.role))
    )


def with_sensitive_marked(record: ConnectorRecord) -> ConnectorRecord:
    """`record` with every involvement in a sensitive service marked so (`as_marked`); `record`
    itself when none needed marking."""
    involvements = record.involvements
    if not involvements:
        return record
    marked = [as_marked(involvement) for involvement in involvements]
    if all(new is old for new, old in zip(marked, involvements, strict=True)):
        return record
    return record.model_copy(update={"involvements": marked})
