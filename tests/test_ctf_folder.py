"""The education connector over a folder of CTFs: which record wins, and the folder re-read while
the connector serves over real HTTP."""

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest

from connectors.ctf import CtfFolderBackend, create_ctf_app, write_ctf
from connectors.ctf import folder as folder_module
from connectors.ctf.folder import CtfFolder
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ConnectorRecord,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
    PersonName,
    School,
)
from connectors.serving import BackgroundServer
from tests.test_ctf_reader import AMELIA, FORMER, OLIVER
from tests.test_witness import checkpoints_kept_by

NORTH = School(urn="107001", name="Northtown Primary")
SOUTH = School(urn="108002", name="Southgate Academy")
JULY = datetime(2025, 7, 1, 9, tzinfo=UTC)


def pupil(upn: str, given: str = "Amelia") -> ConnectorRecord:
    return ConnectorRecord(
        record_id=upn,
        identifiers=Identifiers(upn=upn),
        name=PersonName(given=given, family="Hart"),
        as_of=JULY,
    )


def put(folder: Path, name: str, data: bytes) -> None:
    """Write as a careful operator does: under a hidden name, then renamed into place."""
    hidden = folder / f".{name}.part"
    hidden.write_bytes(data)
    os.replace(hidden, folder / name)


def school_file(school: School, *records: ConnectorRecord, created: datetime = JULY) -> bytes:
    return write_ctf(list(records), school=school, created=created)


def schools_of(index) -> dict[str, str]:
    return {record.record_id: record.school.urn for record in index._records}


def test_a_transferred_pupil_is_served_from_the_newest_file_by_header_time(tmp_path):
    later = JULY + timedelta(days=60)
    put(tmp_path, "b_north.xml", school_file(NORTH, pupil(AMELIA), pupil(OLIVER)))
    put(tmp_path, "a_south.xml", school_file(SOUTH, pupil(AMELIA), created=later))

    index = CtfFolder(tmp_path).refresh()

    assert index is not None
    assert schools_of(index) == {AMELIA: SOUTH.urn, OLIVER: NORTH.urn}


def test_a_newer_record_with_a_former_upn_replaces_the_record_under_the_old_one(tmp_path):
    put(tmp_path, "north.xml", school_file(NORTH, pupil(FORMER)))
    former = f"</Forename><BasicDetails><FormerUPN>{FORMER}</FormerUPN></BasicDetails>"
    newer = school_file(SOUTH, pupil(AMELIA), created=JULY + timedelta(days=1))
    put(tmp_path, "south.xml", newer.replace(b"</Forename>", former.encode()))

    index = CtfFolder(tmp_path).refresh()

    assert index is not None
    assert schools_of(index) == {AMELIA: SOUTH.urn}


def test_a_bad_file_is_reported_by_name_and_served_around(tmp_path, caplog):
    put(tmp_path, "north.xml", school_file(NORTH, pupil(OLIVER)))
    put(tmp_path, "broken.xml", school_file(SOUTH, pupil(AMELIA, given="Zebedee"))[:-30])
    folder = CtfFolder(tmp_path)

    with caplog.at_level(logging.INFO, logger="childlookup.connector.ctf"):
        index = folder.refresh()

    assert index is not None
    assert schools_of(index) == {OLIVER: NORTH.urn}
    (broken,) = [s for s in folder.status() if s.name == "broken.xml"]
    assert broken.error is not None
    assert broken.pupils == 0
    rejected = [r for r in caplog.records if r.getMessage().startswith("ctf_file_rejected")]
    assert len(rejected) == 1
    assert "file=broken.xml" in rejected[0].getMessage()
    assert all("Zebedee" not in r.getMessage() for r in caplog.records)


UNKNOWN_ENCODING = b'<?xml version="1.0" encoding="x-no-such"?><CTfile/>'


def test_a_file_the_parser_cannot_decode_at_start_up_is_rejected_and_the_rest_served(
    tmp_path, caplog
):
    put(tmp_path, "north.xml", school_file(NORTH, pupil(OLIVER)))
    put(tmp_path, "odd.xml", UNKNOWN_ENCODING)

    with caplog.at_level(logging.INFO, logger="childlookup.connector.ctf"):
        backend = CtfFolderBackend(tmp_path)

    assert schools_of(backend._index) == {OLIVER: NORTH.urn}
    assert "file=odd.xml reason=unreadable XML" in rejections(caplog)


def test_a_removed_file_goes_even_when_another_fails_in_the_same_look(tmp_path):
    put(tmp_path, "north.xml", school_file(NORTH, pupil(OLIVER)))
    put(tmp_path, "south.xml", school_file(SOUTH, pupil(AMELIA)))
    folder = CtfFolder(tmp_path)
    folder.refresh()

    (tmp_path / "north.xml").unlink()
    put(tmp_path, "odd.xml", UNKNOWN_ENCODING)
    index = folder.refresh()

    assert index is not None
    assert schools_of(index) == {AMELIA: SOUTH.urn}


def test_a_file_dated_in_the_future_is_rejected_and_outranks_nothing(tmp_path, caplog):
    now = datetime.now(UTC)
    put(tmp_path, "north.xml", school_file(NORTH, pupil(AMELIA), created=now - timedelta(1)))
    future = school_file(SOUTH, pupil(AMELIA), created=now + timedelta(hours=2))
    put(tmp_path, "south.xml", future)

    with caplog.at_level(logging.INFO, logger="childlookup.connector.ctf"):
        index = CtfFolder(tmp_path).refresh()

    assert index is not None
    assert schools_of(index) == {AMELIA: NORTH.urn}
    assert "file=south.xml reason=the Header DateTime is more than an hour" in rejections(caplog)


def test_a_link_to_a_file_outside_the_folder_is_not_read(tmp_path, caplog):
    folder, outside = tmp_path / "ctf", tmp_path / "elsewhere.xml"
    folder.mkdir()
    outside.write_bytes(school_file(NORTH, pupil(AMELIA)))
    (folder / "link.xml").symlink_to(outside)

    with caplog.at_level(logging.INFO, logger="childlookup.connector.ctf"):
        backend = CtfFolderBackend(folder)

    assert backend._index._records == ()
    assert "file=link.xml reason=a symbolic link" in rejections(caplog)


def test_a_file_over_the_size_cap_is_rejected(tmp_path, caplog, monkeypatch):
    data = school_file(NORTH, pupil(AMELIA))
    monkeypatch.setattr(folder_module, "MAX_FILE_BYTES", len(data) - 1)
    put(tmp_path, "north.xml", data)

    with caplog.at_level(logging.INFO, logger="childlookup.connector.ctf"):
        backend = CtfFolderBackend(tmp_path)

    assert backend._index._records == ()
    assert "file=north.xml reason=larger than" in rejections(caplog)


def test_an_empty_folder_serves_nothing_and_a_missing_one_is_refused(tmp_path):
    assert CtfFolderBackend(tmp_path)._index._records == ()
    with pytest.raises(ValueError, match="not a folder"):
        CtfFolderBackend(tmp_path / "absent")


def lookup(url: str, upn: str) -> LookupResponse:
    request = LookupRequest(
        request_id="req-1",
        deadline=datetime.now(UTC) + timedelta(seconds=5),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA383"),
        identifiers=Identifiers(upn=upn),
        fields=[FieldId.NAME, FieldId.SCHOOL],
    )
    response = httpx.post(url + LOOKUP_PATH, content=request.model_dump_json(), timeout=5)
    assert response.status_code == 200, response.text
    return LookupResponse.model_validate_json(response.content)


def eventually(check, timeout: float = 5.0):
    """Poll `check` until it returns something truthy; the folder is looked at every 50 ms."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def rejections(caplog) -> str:
    return " ".join(
        r.getMessage() for r in caplog.records if r.getMessage().startswith("ctf_file_rejected")
    )


def served_school(url: str, upn: str) -> str | None:
    records = lookup(url, upn).records
    return records[0].school.urn if records and records[0].school else None


def test_the_connector_follows_the_folder_as_files_arrive_change_break_and_go(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="childlookup.connector.ctf")
    put(tmp_path, "north.xml", school_file(NORTH, pupil(OLIVER)))
    app = create_ctf_app(folder=tmp_path, reload_interval_s=0.05)

    with BackgroundServer(app) as server:
        assert served_school(server.url, OLIVER) == NORTH.urn
        assert lookup(server.url, AMELIA).records == []

        put(tmp_path, "south.xml", school_file(SOUTH, pupil(AMELIA)))
        assert eventually(lambda: served_school(server.url, AMELIA)) == SOUTH.urn

        moved = school_file(SOUTH, pupil(OLIVER), pupil(AMELIA), created=JULY + timedelta(1))
        put(tmp_path, "south.xml", moved)
        assert eventually(lambda: served_school(server.url, OLIVER) == SOUTH.urn)

        put(tmp_path, "south.xml", b"<CTfile><Header>")  # a bad replacement
        assert eventually(lambda: "file=south.xml" in rejections(caplog))
        assert served_school(server.url, OLIVER) == SOUTH.urn

        (tmp_path / "south.xml").unlink()
        assert eventually(lambda: served_school(server.url, OLIVER) == NORTH.urn)
        assert eventually(lambda: lookup(server.url, AMELIA).records == [])


def test_the_connector_witnesses_the_gateways_audit_checkpoints(tmp_path):
    put(tmp_path, "north.xml", school_file(NORTH, pupil(OLIVER)))
    app = partial(create_ctf_app, folder=tmp_path)

    assert checkpoints_kept_by(app, tmp_path / "witness.db", "education") == [100, 200]
