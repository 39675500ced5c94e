"""Matching accuracy benchmark: how often a demographic lookup links the right records, only them.

For each noise level (`extreme` included) a labelled population is written as `childlookup synth`
writes it (a truth file names the child behind every record, and the faults each copy shows); the
reference connectors serve it and the real gateway answers demographic lookups - the child's
details as the NHS spine holds them, address lines and carers' names included unless
`--core-details-only` - over loopback HTTP. Which records each lookup linked is read back from the
audit log (record pseudonyms, recomputed here with the audit key) and scored against the truth:

- precision: linked records that really are the child's / all linked records;
- recall: the child's records that were linked / all the child's records, over children the
  gateway may find by demographics (shielded and restricted children are hidden by design, and
  counted separately) and lookups it answered;
- both also for the records that carry no NHS number, the ones only demographics can link;
- wrong links by how the wrongly linked child is related to the one asked for (twin, sibling,
  namesake, none), and missed records by the faults the missed copy shows (from the truth file),
  the detail a partial query left out, and the lookup's outcome when it was not FOUND.

Lookups are an even sample of the children plus, as hard cases, every twin and every child with a
namesake (same given and family name, same postcode district, another household): precision,
recall and misses are over the sample, so they compare across runs; the twin and namesake counts
are over every twin's and namesake's lookup, sampled or not. `--partial-queries RATE` leaves one
detail (given name, postcode or date of birth) out of that share of lookups; a lookup the gateway
refuses for want of details is not asked, and counted by its error's `extensions.code`.

Each link threshold in the sweep is a gateway restart with `CHILDLOOKUP_LINK_THRESHOLD`; the
default threshold is always included. Prints a table and writes bench/results/matching.json.

    python -m bench.matching --children 3000 --lookups 500 --noise low medium high extreme

Traffic goes only to 127.0.0.1; every loop is bounded by the lookup count.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

import httpx

from bench.report import write_report
from bench.stack import running_stack
from connectors.protocol import ConnectorRecord
from connectors.synthetic import (
    Fault,
    NoiseLevel,
    NoiseProfile,
    generate_population,
    load_faults,
    load_truth,
    write_population,
)
from gateway.audit import Pseudonymiser
from gateway.identifiers import CARER_NAMES_MAX
from gateway.linkage import LinkageModel

RESULTS = Path(__file__).resolve().parent / "results"
AUDIT_KEY = "bench-matching-audit-key-0123456789abcdef"
SEARCH = """query($d: DemographicsInput!) {
  child(demographics: $d, purpose: SAFEGUARDING_ENQUIRY) { outcome auditId } }"""
SOURCES = ("health", "education", "social_care")
# What a partial query leaves out: one of these DemographicsInput fields.
DROPPABLE = ("givenName", "postcode", "dateOfBirth")
# Leaving out the postcode leaves out the whole address: a practitioner who knows the street knows
# the postcode, or can look it up.
_DROPPED_WITH: Final = {"postcode": ("addressLines",)}


@dataclass(frozen=True)
class Population:
    records: dict[tuple[str, str], ConnectorRecord]
    truth: dict[tuple[str, str], str]
    faults: dict[tuple[str, str], tuple[Fault, ...]]

    @classmethod
    def read(cls, folder: Path) -> Population:
        records = {}
        for source in SOURCES:
            with (folder / f"{source}.jsonl").open("rb") as lines:
                for line in lines:
                    record = ConnectorRecord.model_validate_json(line)
                    records[(source, record.record_id)] = record
        truth = folder / "truth.jsonl"
        return cls(records, load_truth(truth), load_faults(truth))

    def of_child(self) -> dict[str, list[tuple[str, str]]]:
        children: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
        for key, child in self.truth.items():
            children[child].append(key)
        return dict(children)

    def health(self) -> dict[str, ConnectorRecord]:
        """Each child's health record, the original its copies drift from."""
        return {
            self.truth[key]: record for key, record in self.records.items() if key[0] == "health"
        }


@dataclass(frozen=True)
class Kinship:
    """How two children are related, read from their health records: twins share a home and a
    date of birth, siblings a home; namesakes share given and family name (case aside) but not a
    home. The health record is the original, so this is exact."""

    home: dict[str, tuple[str, ...]]
    born: dict[str, str]
    name: dict[str, tuple[str, str]]
    district: dict[str, str]

    @classmethod
    def of(cls, population: Population) -> Kinship:
        health = population.health()
        home: dict[str, tuple[str, ...]] = {}
        born: dict[str, str] = {}
        name: dict[str, tuple[str, str]] = {}
        district: dict[str, str] = {}
        for child, record in health.items():
            assert record.name is not None
            assert record.date_of_birth is not None
            assert record.address is not None
            home[child] = (*record.address.lines, record.address.postcode)
            born[child] = record.date_of_birth.isoformat()
            name[child] = (record.name.given.casefold(), record.name.family.casefold())
            district[child] = record.address.postcode.split()[0]
        return cls(home, born, name, district)

    def relation(self, child: str, other: str) -> str:
        if self.home[child] == self.home[other]:
            return "twin" if self.born[child] == self.born[other] else "sibling"
        return "namesake" if self.name[child] == self.name[other] else "none"

    def twins(self) -> dict[str, set[str]]:
        return self._grouped(lambda c: (self.home[c], self.born[c]))

    def namesakes(self) -> dict[str, set[str]]:
        """Children sharing given and family name with a child of another home in their postcode
        district."""
        same = self._grouped(lambda c: (self.name[c], self.district[c]))
        return {
            child: {o for o in others if self.relation(child, o) == "namesake"}
            for child, others in same.items()
            if any(self.relation(child, o) == "namesake" for o in others)
        }

    def _grouped(self, key: Callable[[str], Hashable]) -> dict[str, set[str]]:
        groups: defaultdict[Hashable, set[str]] = defaultdict(set)
        for child in self.home:
            groups[key(child)].add(child)
        return {c: group - {c} for group in groups.values() if len(group) > 1 for c in group}


@dataclass(frozen=True)
class Lookup:
    """One demographic lookup: for whom, with which details, and which detail it left out."""

    child: str
    query: dict[str, Any]
    dropped: str | None
    sampled: bool


def _query(record: ConnectorRecord, corroborated: bool) -> dict[str, Any]:
    assert record.name is not None
    assert record.date_of_birth is not None
    assert record.address is not None
    query: dict[str, Any] = {
        "givenName": record.name.given,
        "familyName": record.name.family,
        "dateOfBirth": record.date_of_birth.isoformat(),
        "postcode": record.address.postcode,
    }
    if record.sex is not None:
        query["sex"] = record.sex.name
    if corroborated:
        query["addressLines"] = record.address.lines
        query["carerNames"] = [carer.name for carer in record.carers or ()][:CARER_NAMES_MAX]
    return query


def plan_lookups(
    population: Population,
    kinship: Kinship,
    lookups: int,
    partial: float,
    seed: int,
    corroborated: bool,
) -> list[Lookup]:
    """An even sample of `lookups` children, then every twin and namesake not in it; `partial` of
    all of them leave out one detail. Seeded, so every threshold asks the same questions."""
    health = population.health()
    everyone = sorted(health)
    step = max(1, len(everyone) // lookups)
    sample = everyone[::step][:lookups]
    hard = sorted((kinship.twins().keys() | kinship.namesakes().keys()) - set(sample))
    rng = random.Random(seed)
    planned: list[Lookup] = []
    for child in [*sample, *hard]:
        query = _query(health[child], corroborated)
        dropped = rng.choice(DROPPABLE) if rng.random() < partial else None
        if dropped is not None:
            for detail in (dropped, *_DROPPED_WITH.get(dropped, ())):
                query.pop(detail, None)
        planned.append(Lookup(child, query, dropped, sampled=len(planned) < len(sample)))
    return planned


def _hidden_by_design(population: Population, keys: list[tuple[str, str]]) -> bool:
    return any(
        population.records[k].flags.shielded or population.records[k].flags.restricted for k in keys
    )


@dataclass(frozen=True)
class Answer:
    """What the gateway said to one lookup: an outcome and audit id, or the refusal's code."""

    outcome: str | None
    audit_id: str | None
    refused: str | None


def _answer(response: httpx.Response) -> Answer:
    """A lookup's answer, or - when the gateway refused it (too few details, or a query the schema
    in force does not accept) - the refusal's `extensions.code`."""
    body = response.json()
    child = (body.get("data") or {}).get("child")
    if child is not None:
        return Answer(child["outcome"], child["auditId"], None)
    errors = body.get("errors") or [{}]
    code = (errors[0].get("extensions") or {}).get("code")
    return Answer(None, None, str(code or f"no code (HTTP {response.status_code})"))


def run_threshold(
    work: Path,
    folder: Path,
    population: Population,
    kinship: Kinship,
    lookups: list[Lookup],
    link: float | None,
) -> dict[str, Any]:
    """Every lookup through a freshly started gateway at one link threshold; scored links."""
    env = {"CHILDLOOKUP_AUDIT_KEY": AUDIT_KEY}
    if link is not None:
        env["CHILDLOOKUP_LINK_THRESHOLD"] = str(link)
        # A link threshold below the possible one would be refused: the possible band shrinks.
        possible = LinkageModel.load().possible_threshold
        env["CHILDLOOKUP_POSSIBLE_THRESHOLD"] = str(min(link, possible))
    state = work / f"state-{link}"
    state.mkdir()
    answers: dict[str, Answer] = {}
    with running_stack(state, folder, gateway_env=env) as stack, httpx.Client() as client:
        started = time.perf_counter()
        for lookup in lookups:
            response = client.post(
                stack.graphql_url,
                json={"query": SEARCH, "variables": {"d": lookup.query}},
                headers={"authorization": f"Bearer {stack.token}"},
                timeout=30,
            )
            answers[lookup.child] = _answer(response)
        elapsed = time.perf_counter() - started
        audit_ids = {c: a.audit_id for c, a in answers.items() if a.audit_id is not None}
        linked = _linked_from_audit(stack.audit_db, population, audit_ids)
    sample = [lookup for lookup in lookups if lookup.sampled]
    said = [answers[lookup.child] for lookup in sample]
    return {
        "link_threshold": link,
        "lookups": len(sample),
        "lookups_per_second": round(len(lookups) / elapsed, 1),
        "outcomes": dict(Counter(a.outcome for a in said if a.outcome is not None)),
        "partial_queries": sum(lookup.dropped is not None for lookup in sample),
        "not_asked": dict(Counter(a.refused for a in said if a.refused is not None)),
        **_score(population, kinship, sample, answers, linked),
        "twins": _near_misses(population, kinship.twins(), lookups, linked),
        "namesakes": _near_misses(population, kinship.namesakes(), lookups, linked),
    }


def _linked_from_audit(
    audit_db: Path, population: Population, audit_ids: dict[str, str]
) -> dict[str, set[tuple[str, str]]]:
    """Which records each lookup linked, from the audit log's record pseudonyms."""
    pseudonyms = Pseudonymiser(AUDIT_KEY.encode())
    by_ref = {
        pseudonyms.ref("record", f"{source}:{record_id}"): (source, record_id)
        for source, record_id in population.records
    }
    linked: dict[str, set[tuple[str, str]]] = {}
    with sqlite3.connect(audit_db) as conn:
        for child, audit_id in audit_ids.items():
            (body,) = conn.execute(
                "SELECT body FROM audit_log WHERE audit_id = ?", (audit_id,)
            ).fetchone()
            linked[child] = {by_ref[m["record_ref"]] for m in json.loads(body)["matches"]}
    return linked


def _score(
    population: Population,
    kinship: Kinship,
    lookups: list[Lookup],
    answers: dict[str, Answer],
    linked: dict[str, set[tuple[str, str]]],
) -> dict[str, Any]:
    of_child = population.of_child()
    counts: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    for lookup in lookups:
        child = lookup.child
        if child not in linked:
            continue  # not asked: no link to score, right or wrong
        truth = set(of_child[child])
        for key in linked[child]:
            right = key in truth
            no_id = population.records[key].identifiers.nhs_number is None
            counts["tp" if right else "fp"] += 1
            if no_id:
                counts["tp_no_id" if right else "fp_no_id"] += 1
            if not right:
                wrong[kinship.relation(child, population.truth[key])] += 1
        if _hidden_by_design(population, of_child[child]):
            counts["hidden_children"] += 1
            continue
        for key in truth - linked[child]:
            counts["fn"] += 1
            if population.records[key].identifiers.nhs_number is None:
                counts["fn_no_id"] += 1
            missed[_miss_reason(population, lookup, answers[child], key)] += 1
    return {
        "all_records": _rates(counts["tp"], counts["fp"], counts["fn"]),
        "records_without_nhs_number": _rates(
            counts["tp_no_id"], counts["fp_no_id"], counts["fn_no_id"]
        ),
        "children_hidden_by_design": counts["hidden_children"],
        "wrong_links_by_relation": dict(wrong.most_common()),
        "misses_by_reason": dict(missed.most_common()),
        "misses_by_fault": _by_part(missed),
    }


def _by_part(reasons: Counter[str]) -> dict[str, int]:
    """Misses counted once for each part of their reason: how many misses each fault is in."""
    parts: Counter[str] = Counter()
    for reason, count in reasons.items():
        for part in reason.split(" + "):
            parts[part] += count
    return dict(parts.most_common())


def _miss_reason(
    population: Population, lookup: Lookup, answer: Answer, key: tuple[str, str]
) -> str:
    """Why a record was missed, as far as the truth tells: the faults of the missed copy, the
    detail the query left out, and the lookup's outcome when it found nothing to merge."""
    reasons = [str(fault) for fault in population.faults.get(key, ())] or ["no fault"]
    if lookup.dropped is not None:
        reasons.insert(0, f"query without {lookup.dropped}")
    if answer.outcome != "FOUND":
        reasons.insert(0, f"lookup {answer.outcome}")
    return " + ".join(reasons)


def _near_misses(
    population: Population,
    near: dict[str, set[str]],
    lookups: list[Lookup],
    linked: dict[str, set[tuple[str, str]]],
) -> dict[str, int]:
    """Of the lookups for children in `near` (twins, or namesakes) that were answered, how many
    linked a record of the other child, and how many such records."""
    asked = [lookup.child for lookup in lookups if lookup.child in near and lookup.child in linked]
    crossed = [
        sum(population.truth[key] in near[child] for key in linked[child]) for child in asked
    ]
    return {
        "lookups": len(asked),
        "lookups_linking_the_other": sum(count > 0 for count in crossed),
        "records_of_the_other_linked": sum(crossed),
    }


def _rates(tp: int, fp: int, fn: int) -> dict[str, Any]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "true_links": tp,
        "wrong_links": fp,
        "missed_links": fn,
        "precision": round(precision, 5),
        "recall": round(recall, 5),
        "f1": round(f1, 5),
    }


def run_noise(
    noise: NoiseLevel,
    children: int,
    lookups: int,
    offsets: list[float],
    seed: int,
    partial: float,
    corroborated: bool,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="childlookup-matching-") as tmp:
        work = Path(tmp)
        folder = work / "population"
        # As `childlookup synth --seed --children --noise` writes it, for every noise level.
        write_population(
            generate_population(seed, children, noise=NoiseProfile.preset(noise)), folder
        )
        population = Population.read(folder)
        kinship = Kinship.of(population)
        planned = plan_lookups(population, kinship, lookups, partial, seed, corroborated)
        default = LinkageModel.load().link_threshold
        sweep = sorted({default, *(default + o for o in offsets)})
        return {
            "noise": noise,
            "children": children,
            "records": len(population.records),
            "records_without_nhs_number": sum(
                1 for r in population.records.values() if r.identifiers.nhs_number is None
            ),
            "copies_by_fault": dict(
                Counter(str(f) for faults in population.faults.values() for f in faults)
            ),
            "twins": len(kinship.twins()),
            "children_with_a_namesake": len(kinship.namesakes()),
            "partial_query_rate": partial,
            "address_and_carers_in_queries": corroborated,
            "default_link_threshold": default,
            "thresholds": [
                run_threshold(
                    work,
                    folder,
                    population,
                    kinship,
                    planned,
                    None if link == default else link,
                )
                | {"link_threshold": link}
                for link in sweep
            ],
        }


def _rate(value: str) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a share between 0 and 1")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=3000)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument(
        "--noise", nargs="+", default=["low", "medium", "high"], choices=get_args(NoiseLevel)
    )
    parser.add_argument(
        "--offsets",
        type=float,
        nargs="*",
        default=[-6.0, -3.0, 3.0, 6.0],
        help="link thresholds to sweep, relative to the default",
    )
    parser.add_argument(
        "--partial-queries",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share of lookups that leave out one detail: given name, postcode or date of birth",
    )
    parser.add_argument(
        "--core-details-only",
        action="store_true",
        help="ask with names, date of birth, postcode and sex only: no address lines, no carers",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "matching.json")
    args = parser.parse_args()
    runs = [
        run_noise(
            noise,
            args.children,
            args.lookups,
            args.offsets,
            args.seed,
            args.partial_queries,
            not args.core_details_only,
        )
        for noise in args.noise
    ]
    write_report("matching", args.out, runs=runs)
    _print(runs)
    print(f"report: {args.out}")


def _print(runs: list[dict[str, Any]]) -> None:
    print(
        f"{'noise':>7} {'link':>6} {'P all':>8} {'R all':>8} {'P no-id':>8} {'R no-id':>8}"
        f" {'F1 no-id':>8} {'wrong':>6} {'twin':>5} {'namesk':>6} {'unasked':>7}"
        f" {'lookups/s':>9}  outcomes"
    )
    for run in runs:
        for t in run["thresholds"]:
            a, n = t["all_records"], t["records_without_nhs_number"]
            mark = "*" if t["link_threshold"] == run["default_link_threshold"] else " "
            print(
                f"{run['noise']:>7} {t['link_threshold']:>5}{mark} {a['precision']:>8}"
                f" {a['recall']:>8} {n['precision']:>8} {n['recall']:>8} {n['f1']:>8}"
                f" {a['wrong_links']:>6} {t['twins']['lookups_linking_the_other']:>5}"
                f" {t['namesakes']['lookups_linking_the_other']:>6}"
                f" {sum(t['not_asked'].values()):>7} {t['lookups_per_second']:>9}  {t['outcomes']}"
            )
    print(
        "* default threshold; wrong: wrong links in the sample; twin / namesk: lookups for a twin"
        " (namesake) that linked the other's record, over every twin's (namesake's) lookup;"
        " unasked: lookups refused for want of details"
    )
    for run in runs:
        default = next(
            t for t in run["thresholds"] if t["link_threshold"] == run["default_link_threshold"]
        )
        print(
            f"\n{run['noise']} noise, default threshold: {run['twins']} twins and"
            f" {run['children_with_a_namesake']} children with a namesake;"
            f" twins looked up {default['twins']['lookups']}, namesakes"
            f" {default['namesakes']['lookups']}; wrong links by relation"
            f" {default['wrong_links_by_relation']}; not asked {default['not_asked']}"
        )
        misses = default["misses_by_reason"]
        print(f"  {'missed':>6}  reason (faults of the missed copy)")
        for reason, count in misses.items():
            print(f"  {count:>6}  {reason}")
        print(f"  {sum(misses.values()):>6}  in all; each fault, over the misses it is part of:")
        for fault, count in default["misses_by_fault"].items():
            print(f"  {count:>6}  {fault}")


if __name__ == "__main__":
    main()
