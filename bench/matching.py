"""Matching accuracy benchmark: how often a demographic lookup links the right records, only them.

For each noise level, `childlookup synth` writes a labelled population (a truth file names the child
behind every record); the reference connectors serve it and the real gateway answers demographic
lookups - the child's details as the NHS spine holds them - over loopback HTTP. Which records each
lookup linked is read back from the audit log (record pseudonyms, recomputed here with the audit
key) and scored against the truth:

- precision: linked records that really are the child's / all linked records;
- recall: the child's records that were linked / all the child's records, over children the
  gateway may find by demographics (shielded and restricted children are hidden by design, and
  counted separately);
- both also for the records that carry no NHS number, the ones only demographics can link.

Each link threshold in the sweep is a gateway restart with `CHILDLOOKUP_LINK_THRESHOLD`; the
default threshold is always included. Prints a table and writes bench/results/matching.json.

    python -m bench.matching --children 3000 --lookups 500 --noise low medium high

Traffic goes only to 127.0.0.1; every loop is bounded by the lookup count.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.report import write_report
from bench.stack import running_stack
from connectors.protocol import ConnectorRecord
from connectors.synthetic import load_truth
from gateway.audit import Pseudonymiser
from gateway.linkage import LinkageModel

RESULTS = Path(__file__).resolve().parent / "results"
AUDIT_KEY = "bench-matching-audit-key-0123456789abcdef"
SEARCH = """query($d: DemographicsInput!) {
  child(demographics: $d, purpose: SAFEGUARDING_ENQUIRY) { outcome auditId } }"""
SOURCES = ("health", "education", "social_care")


@dataclass(frozen=True)
class Population:
    records: dict[tuple[str, str], ConnectorRecord]
    truth: dict[tuple[str, str], str]

    @classmethod
    def read(cls, folder: Path) -> Population:
        records = {}
        for source in SOURCES:
            with (folder / f"{source}.jsonl").open("rb") as lines:
                for line in lines:
                    record = ConnectorRecord.model_validate_json(line)
                    records[(source, record.record_id)] = record
        return cls(records, load_truth(folder / "truth.jsonl"))

    def of_child(self) -> dict[str, list[tuple[str, str]]]:
        children: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
        for key, child in self.truth.items():
            children[child].append(key)
        return dict(children)


def _query(record: ConnectorRecord) -> dict[str, Any]:
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
    return query


def _hidden_by_design(population: Population, keys: list[tuple[str, str]]) -> bool:
    return any(
        population.records[k].flags.shielded or population.records[k].flags.restricted for k in keys
    )


def run_threshold(
    work: Path, folder: Path, population: Population, children: list[str], link: float | None
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
    of_child = population.of_child()
    audit_ids: dict[str, str] = {}
    outcomes: Counter[str] = Counter()
    with running_stack(state, folder, gateway_env=env) as stack, httpx.Client() as client:
        started = time.perf_counter()
        for child in children:
            health = next(k for k in of_child[child] if k[0] == "health")
            response = client.post(
                stack.graphql_url,
                json={"query": SEARCH, "variables": {"d": _query(population.records[health])}},
                headers={"authorization": f"Bearer {stack.token}"},
                timeout=30,
            )
            answer = response.json()["data"]["child"]
            outcomes[answer["outcome"]] += 1
            audit_ids[child] = answer["auditId"]
        elapsed = time.perf_counter() - started
        linked = _linked_from_audit(stack.audit_db, population, audit_ids)
    return {
        "link_threshold": link,
        "lookups": len(children),
        "lookups_per_second": round(len(children) / elapsed, 1),
        "outcomes": dict(outcomes),
        **_score(population, of_child, children, linked),
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
    of_child: dict[str, list[tuple[str, str]]],
    children: list[str],
    linked: dict[str, set[tuple[str, str]]],
) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    for child in children:
        truth = set(of_child[child])
        findable = not _hidden_by_design(population, of_child[child])
        for key in linked[child]:
            right = key in truth
            no_id = population.records[key].identifiers.nhs_number is None
            counts["tp" if right else "fp"] += 1
            if no_id:
                counts["tp_no_id" if right else "fp_no_id"] += 1
        if not findable:
            counts["hidden_children"] += 1
            continue
        for key in truth - linked[child]:
            counts["fn"] += 1
            if population.records[key].identifiers.nhs_number is None:
                counts["fn_no_id"] += 1
    return {
        "all_records": _rates(counts["tp"], counts["fp"], counts["fn"]),
        "records_without_nhs_number": _rates(
            counts["tp_no_id"], counts["fp_no_id"], counts["fn_no_id"]
        ),
        "children_hidden_by_design": counts["hidden_children"],
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
    noise: str, children: int, lookups: int, offsets: list[float], seed: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="childlookup-matching-") as tmp:
        work = Path(tmp)
        folder = work / "population"
        subprocess.run(
            [
                *(sys.executable, "-m", "gateway.cli", "synth", "--seed", str(seed)),
                *("--children", str(children), "--out", str(folder), "--noise", noise),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        population = Population.read(folder)
        everyone = sorted(population.of_child())
        step = max(1, len(everyone) // lookups)
        chosen = everyone[::step][:lookups]
        default = LinkageModel.load().link_threshold
        sweep = sorted({default, *(default + o for o in offsets)})
        return {
            "noise": noise,
            "children": children,
            "records": len(population.records),
            "records_without_nhs_number": sum(
                1 for r in population.records.values() if r.identifiers.nhs_number is None
            ),
            "default_link_threshold": default,
            "thresholds": [
                run_threshold(work, folder, population, chosen, None if link == default else link)
                | {"link_threshold": link}
                for link in sweep
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=3000)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--noise", nargs="+", default=["low", "medium", "high"])
    parser.add_argument(
        "--offsets",
        type=float,
        nargs="*",
        default=[-6.0, -3.0, 3.0, 6.0],
        help="link thresholds to sweep, relative to the default",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "matching.json")
    args = parser.parse_args()
    runs = [
        run_noise(noise, args.children, args.lookups, args.offsets, args.seed)
        for noise in args.noise
    ]
    write_report("matching", args.out, runs=runs)
    print(
        f"{'noise':>7} {'link':>6} {'P all':>8} {'R all':>8} {'P no-id':>8} {'R no-id':>8}"
        f" {'F1 no-id':>8} {'wrong':>6} {'lookups/s':>9}  outcomes"
    )
    for run in runs:
        for t in run["thresholds"]:
            a, n = t["all_records"], t["records_without_nhs_number"]
            mark = "*" if t["link_threshold"] == run["default_link_threshold"] else " "
            print(
                f"{run['noise']:>7} {t['link_threshold']:>5}{mark} {a['precision']:>8}"
                f" {a['recall']:>8} {n['precision']:>8} {n['recall']:>8} {n['f1']:>8}"
                f" {a['wrong_links']:>6} {t['lookups_per_second']:>9}  {t['outcomes']}"
            )
    print("* default threshold")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
