"""What leaves the gateway beside the GraphQL answer, the limits, and the caller's identity: a
decision log that cannot be written, token claims that are not text, traces of hidden searches,
the daily cap's count of one search, identifiers in a justification, a stalled audit read."""

import time
from datetime import date

import httpx
import psycopg
import pytest
from pydantic import BaseModel, ConfigDict

from connectors.protocol import Address, Identifiers, PersonName, RecordFlags
from gateway.audit.migrations import upgrade_schema
from gateway.policy import DecisionLog, PolicyError
from tests.factories import NHS, health_record, social_care_record, synthetic_nhs
from tests.spans import span_exporter
from tests.stack import LOOKUP, reference_stack

RECORDS = {"health": [health_record()]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with reference_stack(tmp_path_factory.mktemp("review-leaks"), RECORDS) as gateway:
        yield gateway


# --- the decision log ------------------------------------------------------------------------


def test_a_decision_log_that_cannot_be_written_lets_no_child_data_out(tmp_path):
    """ "The pipeline asks through LoggedPolicy, so no decision can be taken without being logged"
    (gateway/policy/decision_log.py), and the audit record cites the decision ids for an auditor to
    replay. With the log's volume full (here /dev/full: every write fails with ENOSPC) the lines
    were dropped in a loop callback and the child's details were released all the same, citing
    decisions no log holds."""
    with reference_stack(tmp_path, RECORDS, decision_log="/dev/full") as gateway:
        first = gateway.lookup("social_worker", NHS)
        second = gateway.lookup("social_worker", NHS)
    for answer in (first, second):
        assert (answer["data"] or {}).get("child") is None, answer
        assert answer["errors"][0]["extensions"]["code"] == "POLICY_UNAVAILABLE"
    assert "Amelia" not in str(first) + str(second)


class _Volume:
    """A decision log's sink on a volume that can fill up and be cleared."""

    def __init__(self) -> None:
        self.full = True
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        self.lines.append(text)


@pytest.mark.anyio
async def test_decisions_are_acted_on_again_once_the_decision_log_can_be_written():
    """The other half of the fix: refusing is for as long as the log cannot be written."""

    class _Line(BaseModel):
        model_config = ConfigDict(frozen=True)
        n: int

    volume = _Volume()
    log = DecisionLog(volume, instance="t")
    log.record("childlookup/plan", "rev-1", _Line(n=1), _Line(n=1))
    with pytest.raises(PolicyError):
        await log.written()
    volume.full = False
    decided = log.record("childlookup/plan", "rev-1", _Line(n=2), _Line(n=2))
    await log.written()
    assert decided in volume.lines[0]


# --- the caller's identity -------------------------------------------------------------------


def _token(gateway, **claims):
    return gateway.signed_token(**claims)


@pytest.mark.parametrize(
    "claims",
    [
        {"org": "LA\ud800"},
        {"role": "social_worker\udfff"},
        {"sub": "idp-user-\ud83d"},
    ],
    ids=["organisation", "role", "subject"],
)
def test_a_token_whose_claims_are_not_text_is_refused_at_the_edge_not_an_internal_error(
    stack, claims
):
    """JSON lets a token carry a lone surrogate (`"\\ud800"`), which is no character and cannot be
    written as UTF-8. The edge refuses such text in a request body (gateway.middleware), but a
    token's claims went on into the limits and the audit log: the lookup ended in INTERNAL_ERROR
    with no audit record of the attempt. A token that cannot name its caller is UNAUTHENTICATED."""
    before = len(stack.components.audit.records())
    response = stack.post(
        {"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "SAFEGUARDING_ENQUIRY"}},
        _token(stack, **claims),
    )
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert len(stack.components.audit.records()) == before


# --- traces of a search shield-safe search hid -----------------------------------------------

_SEARCH = """
query Search($demographics: DemographicsInput, $purpose: Purpose!) {
  child(demographics: $demographics, purpose: $purpose) { outcome requestId }
}
"""
_IDS = {"childlookup.request_id", "childlookup.policy.decision_id"}


@pytest.fixture(scope="module")
def spans():
    """Spans of this module's lookups."""
    return span_exporter()


def _shape(exporter, request_id):
    """The trace of one lookup as an operator reading it sees it, less its ids and timings."""
    deadline = time.monotonic() + 5
    while True:
        finished = exporter.get_finished_spans()
        roots = [
            s
            for s in finished
            if s.name == "lookup" and s.attributes.get("childlookup.request_id") == request_id
        ]
        if roots or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    (root,) = roots
    return sorted(
        (
            s.name,
            tuple(sorted((k, str(v)) for k, v in s.attributes.items() if k not in _IDS)),
            str(s.status.status_code),
        )
        for s in finished
        if s.context.trace_id == root.context.trace_id and s.kind.name != "SERVER"
    )


def test_the_trace_of_a_search_that_reached_a_shielded_child_looks_like_one_that_found_nobody(
    tmp_path, spans
):
    """gateway/tracing.py: spans hold "no counts of records or withheld fields either, which for
    a hidden or shielded child would say more than the outcome does". A demographic search that
    reached a shielded child is answered NOT_FOUND, exactly as one that found nobody (shield-safe
    search); its trace told them apart - a second `decide` span (the flags of the child reached)
    and a second round of fan-out with the NHS number the hidden record held."""
    shielded = synthetic_nhs(31)
    hidden = dict(
        name=PersonName(given="Freya", family="Lane"),
        date_of_birth=date(2015, 1, 20),
        address=Address(lines=["3 Quiet Road", "Leeds"], postcode="LS8 1PQ"),
    )
    records = {
        "health": [health_record(shielded, record_id="H-S", **hidden)],
        "social_care": [
            social_care_record(
                shielded,
                record_id="LA-S",
                identifiers=Identifiers(nhs_number=shielded, local_id="LA-S"),
                flags=RecordFlags(shielded=True),
                **hidden,
            )
        ],
    }
    search = {"dateOfBirth": "2015-01-20", "postcode": "LS8 1PQ"}
    with reference_stack(tmp_path, records, demographic_answer_floor_ms=0) as gateway:
        answers = [
            gateway.post(
                {
                    "query": _SEARCH,
                    "variables": {
                        "demographics": {"givenName": given, "familyName": family, **search},
                        "purpose": "SAFEGUARDING_ENQUIRY",
                    },
                },
                gateway.token("social_worker"),
            ).json()["data"]["child"]
            for given, family in (("Freya", "Lane"), ("Nobody", "Atall"))
        ]
        outcomes = [r["outcome"] for r in gateway.components.audit.records()]
    assert outcomes == ["HIDDEN", "NOT_FOUND"]
    assert [a["outcome"] for a in answers] == ["NOT_FOUND", "NOT_FOUND"]
    reached, nobody = (_shape(spans, a["requestId"]) for a in answers)
    assert reached == nobody


# --- the daily cap ---------------------------------------------------------------------------


def test_the_same_search_typed_in_capitals_is_not_a_new_child_at_the_daily_cap(tmp_path):
    """A search names its child by a pseudonym of its normalised details "so the same search by
    the same means is the same child" (Pseudonymiser.child_ref), and matching folds case. But the
    names are kept as typed, so the practitioner who types AMELIA HART after Amelia Hart is
    counted a second child: at the cap the same search is refused LOOKUP_CAP_REACHED and
    reported as possible trawling. (The same holds for knownAs given in another order.)"""
    search = {"dateOfBirth": "2019-03-04", "postcode": "LS6 2AB"}
    with reference_stack(tmp_path, RECORDS, distinct_children_per_user_per_day=1) as gateway:
        token = gateway.token("social_worker")
        answers = [
            gateway.post(
                {
                    "query": _SEARCH,
                    "variables": {
                        "demographics": {"givenName": given, "familyName": family, **search},
                        "purpose": "SAFEGUARDING_ENQUIRY",
                    },
                },
                token,
            ).json()
            for given, family in (("Amelia", "Hart"), ("AMELIA", "HART"), ("amelia", "hart"))
        ]
    assert answers[0]["data"]["child"]["outcome"] == "FOUND"
    for answer in answers[1:]:
        assert "errors" not in answer, answer
        assert answer["data"]["child"]["outcome"] == "FOUND"


# --- justification text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "written", ["94 34 76 59 19", "9434 765 919", "NHS no. 943-4765-919", "9 4 3 4 7 6 5 9 1 9"]
)
def test_a_justification_holding_an_nhs_number_grouped_another_way_is_refused(stack, written):
    """A justification "may not hold an NHS number or UPN": it is kept in the audit record
    (whose child identifiers are otherwise pseudonyms), sent to owners in notifications and shown
    in the alert feed. It was looked for only as 10 digits grouped 3-3-4, so the same number
    written in pairs, 4-3-3 or digit by digit went into all three."""
    answer = stack.lookup(
        "social_worker",
        NHS,
        purpose="CHILD_PROTECTION_ENQUIRY",
        justification=f"Section 47 enquiry for the child {written} after a referral today",
    )
    assert answer.get("errors"), answer["data"]["child"]["outcome"]
    assert answer["errors"][0]["extensions"]["code"] == "INVALID_JUSTIFICATION"


def test_the_trace_of_a_search_hidden_after_its_second_round_looks_like_one_that_found_nobody(
    tmp_path, spans
):
    """As above, when the shielded copy of the child is reached only in the second round (asked
    again with the NHS number the first round's record held): the trace counted the sources
    asked again (`childlookup.second_round.sources`) and held their `fanout.source` spans, for a
    lookup answered NOT_FOUND - which a search that found nobody never has."""
    shielded = social_care_record(
        name=PersonName(given="Mia", family="Stone"),
        address=Address(lines=["9 Elsewhere Road", "Leeds"], postcode="LS11 5QT"),
        flags=RecordFlags(shielded=True),
    )
    records = {"health": [health_record()], "social_care": [shielded]}
    search = {"dateOfBirth": "2019-03-04", "postcode": "LS6 2AB"}
    with reference_stack(tmp_path, records, demographic_answer_floor_ms=0) as gateway:
        answers = [
            gateway.post(
                {
                    "query": _SEARCH,
                    "variables": {
                        "demographics": {"givenName": given, "familyName": family, **search},
                        "purpose": "SAFEGUARDING_ENQUIRY",
                    },
                },
                gateway.token("social_worker"),
            ).json()["data"]["child"]
            for given, family in (("Amelia", "Hart"), ("Nobody", "Atall"))
        ]
        outcomes = [r["outcome"] for r in gateway.components.audit.records()]
    assert outcomes == ["HIDDEN", "NOT_FOUND"]
    reached, nobody = (_shape(spans, a["requestId"]) for a in answers)
    assert reached == nobody


def test_an_audit_log_that_cannot_give_the_days_children_refuses_the_lookup_in_bounded_time(
    tmp_path, postgres_schema
):
    """Without Redis, a user's children today are read from the audit log (InProcessLimits).
    With that read stalled (the table locked by a migration or a long archive run), the lookup
    waited the store's 30 s bound for a request-path read, holding one of the process's places,
    and then failed INTERNAL_ERROR with a resolver fault logged. RedisLimits bounds the same read
    (SEED_TIMEOUT_S) and refuses LIMITS_UNAVAILABLE: "never admitted uncounted", and said so."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    settings = {"database_url": url, "database_schema": schema}
    with (
        reference_stack(tmp_path, RECORDS, **settings) as gateway,
        psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn,
    ):
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = httpx.post(
            f"{gateway.url}/graphql",
            json={"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "DIRECT_CARE"}},
            headers={"authorization": f"Bearer {gateway.token('gp')}"},
            timeout=40,
        )
        took = time.monotonic() - started
        conn.execute("ROLLBACK")
    assert response.json()["errors"][0]["extensions"]["code"] == "LIMITS_UNAVAILABLE"
    assert took < 10
