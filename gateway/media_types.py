"""The media types a GraphQL response is served in, and which one a request's `Accept` asks for
(the GraphQL-over-HTTP specification, https://graphql.github.io/graphql-over-http/draft/).

`application/graphql-response+json` is the specification's own type: with it, a request that is
never executed (a document that does not parse or validate, variables that do not coerce, a
refusal at the edge) answers a 4xx status with no `data` entry, so a client (and any proxy) can
tell a GraphQL answer from a failure by the status alone. `application/json` is the legacy type
every client understands, answered 200 for anything GraphQL itself refused. A request naming
neither (no `Accept`, `*/*`) gets `application/json`, as clients written before the
specification expect.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
JSON: Final = "application/json"


@lru_cache(maxsize=64)
def negotiate(accept: str | None) -> str | None:
    """The media type to answer in for this `Accept` header; None when it accepts neither.

    The preference each type gets is the quality (`q`) of the most specific range that matches it
    (RFC 9110, 12.5.1). The better wins; on a tie, a type named outright beats one reached through
    a wildcard, and between two named outright the specification's own type wins.

    Remembered per header: a client sends the same one every time and each request asks twice
    (whether it can be answered at all, then in which type), and working it out costs 4-9 us.
    """
    if accept is None or not accept.strip():
        return JSON
    ranked = {media: _preference(accept, media) for media in (GRAPHQL_RESPONSE_JSON, JSON)}
    acceptable = {media: rank for media, rank in ranked.items() if rank[0] > 0}
    if not acceptable:
        return None

    def order(media: str) -> tuple[float, int, bool]:
        quality, specificity = acceptable[media]
        named = specificity == 2
        return quality, specificity, (media == GRAPHQL_RESPONSE_JSON) == named

    return max(acceptable, key=order)


def _preference(accept: str, media: str) -> tuple[float, int]:
    """(quality, specificity) of the most specific range in `accept` matching `media`; specificity
    2 for the type itself, 1 for `type/*`, 0 for `*/*`; (0, -1) when nothing matches."""
    kind = media.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)
    for item in accept.split(","):
        name, *parameters = (part.strip() for part in item.split(";"))
        name = name.lower()
        specificity = {media: 2, f"{kind}/*": 1, "*/*": 0}.get(name)
        if specificity is None or specificity <= best[0]:
            continue
        best = (specificity, _quality(parameters))
    return best[1], best[0]


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0
