from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.protocol import (
    Caller,
    ConnectorRecord,
    FieldId,
    Identifiers,
    LookupRequest,
    PersonName,
    Sex,
)
from connectors.records import FileBackend, RecordFileError

AS_OF = datetime(2025, 7, 1, tzinfo=UTC)


def record(record_id: str, **identifiers: str) -> ConnectorRecord:
    return ConnectorRecord(record_id=record_id, identifiers=Identifiers(**identifiers), as_of=AS_OF)


def request(**identifiers: str) -> LookupRequest:
    return LookupRequest(
        request_id="req-1",
        deadline=datetime(2100, 1, 1, tzinfo=UTC),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA1"),
        identifiers=Identifiers(**identifiers),
        fields=[FieldId.NAME],
    )


def write_jsonl(path: Path, records: list[ConnectorRecord]) -> Path:
    path.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def backend(tmp_path: Path) -> FileBackend:
    return FileBackend.from_jsonl(
        write_jsonl(
            tmp_path / "records.jsonl",
            [
                record("A", nhs_number="9000000009"),
                record("B", upn="A801200001001"),
                record("C", nhs_number="9000000009", upn="A801200001001", local_id="C-7"),
                record("D", local_id="9000000009"),
            ],
        )
    )


@pytest.mark.parametrize(
    ("identifiers", "expected"),
    [
        ({"nhs_number": "9000000009"}, ["A", "C"]),
        ({"upn": "A801200001001"}, ["B", "C"]),
        ({"local_id": "C-7"}, ["C"]),
        ({"nhs_number": "9000000009", "upn": "A801200001001"}, ["A", "B", "C"]),
        ({"nhs_number": "9999999999"}, []),
        ({}, []),
    ],
)
@pytest.mark.anyio
async def test_lookup_returns_each_record_sharing_an_identifier_once_in_file_order(
    backend, identifiers, expected
):
    found = await backend.lookup(request(**identifiers))

    assert [r.record_id for r in found] == expected


@pytest.mark.anyio
async def test_identifier_kinds_never_match_each_other(backend):
    found = await backend.lookup(request(local_id="9000000009"))

    assert [r.record_id for r in found] == ["D"]


@pytest.mark.anyio
async def test_loaded_records_are_the_written_ones(tmp_path):
    original = record("A", nhs_number="9000000009").model_copy(
        update={"name": PersonName(given="Ada", family="Smith")}
    )
    backend = FileBackend.from_jsonl(write_jsonl(tmp_path / "r.jsonl", [original]))

    assert await backend.lookup(request(nhs_number="9000000009")) == [original]


@pytest.mark.anyio
async def test_records_loaded_for_some_fields_hold_no_others(tmp_path):
    original = record("A", nhs_number="9000000009").model_copy(
        update={"name": PersonName(given="Ada", family="Smith"), "sex": Sex.FEMALE}
    )
    path = write_jsonl(tmp_path / "r.jsonl", [original])

    backend = FileBackend.from_jsonl(path, fields=[FieldId.NAME])

    (loaded,) = await backend.lookup(request(nhs_number="9000000009"))
    assert loaded == original.model_copy(update={"sex": None})


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"record_id": "B", ', "Invalid JSON"),
        ('{"identifiers": {}, "as_of": "2025-07-01T00:00:00Z"}', "record_id"),
        ("", "Invalid JSON"),
    ],
)
def test_bad_line_is_reported_by_number_without_quoting_the_data(tmp_path, bad_line, reason):
    good = record("A", nhs_number="9000000009").model_dump_json()
    path = tmp_path / "records.jsonl"
    path.write_text(f"{good}\n{bad_line}\n{good}\n", encoding="utf-8")

    with pytest.raises(RecordFileError, match=r"records\.jsonl:2: ") as raised:
        FileBackend.from_jsonl(path)

    assert reason in str(raised.value)
    assert "9000000009" not in str(raised.value)


def test_repeated_record_id_is_refused_naming_both_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "records.jsonl",
        [record("A", upn="A801200001001"), record("B"), record("A", nhs_number="9000000009")],
    )

    with pytest.raises(RecordFileError, match="record 3 repeats the record_id of record 1"):
        FileBackend.from_jsonl(path)


@pytest.mark.anyio
async def test_a_large_file_is_indexed_by_every_identifier(tmp_path):
    # Load and lookup speed on 100k+ records is measured by bench/records.py, not asserted here.
    count = 20_000
    # One record rendered with printf slots, filled per line: building the models here would
    # cost more than the load under test.
    template = record("R%d", nhs_number="9%09d", upn="U%012d").model_dump_json()
    path = tmp_path / "big.jsonl"
    path.write_text("".join(template % (i, i, i) + "\n" for i in range(count)), encoding="utf-8")
    backend = FileBackend.from_jsonl(path)

    by_nhs = [await backend.lookup(request(nhs_number=f"9{i:09d}")) for i in range(0, count, 97)]
    by_upn = [await backend.lookup(request(upn=f"U{i:012d}")) for i in range(0, count, 97)]

    expected = [[f"R{i}"] for i in range(0, count, 97)]
    assert [[r.record_id for r in a] for a in by_nhs] == expected
    assert [[r.record_id for r in a] for a in by_upn] == expected
