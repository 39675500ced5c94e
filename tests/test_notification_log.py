"""A connector's NotificationLog (connectors.notifications) read back after a restart: one JSON
object a line, lines ending at "\n" alone. pydantic writes U+2028, U+2029 and U+0085 raw, and a
notification's accessor name (the practitioner's name as the identity provider sent it) or record
id may hold one: read with `str.splitlines()`, the file broke there, and a connector that had
acknowledged such a notification could not start again.
"""

from __future__ import annotations

import pytest

from connectors.notifications import NOTIFICATIONS_PATH, Accessor, NotificationLog
from tests.factories import notification
from tests.stack import GATEWAY_SIGNER, notification_receiver


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_kept_notification_reads_back_after_a_restart(tmp_path, separator):
    path = tmp_path / "notifications.jsonl"
    sent = notification(
        accessor=Accessor(
            subject="oidc|eddie",
            name=f"Eddie{separator}Clinician",
            role="ed_clinician",
            organisation="RX1",
        )
    )
    body = sent.model_dump_json().encode()
    with notification_receiver(NotificationLog(path)) as client:
        response = client.post(
            NOTIFICATIONS_PATH,
            content=body,
            headers={
                "content-type": "application/json",
                "authorization": GATEWAY_SIGNER.authorization("social_care", body),
            },
        )
    assert response.status_code == 200  # acknowledged: the gateway erases its copy

    restarted = NotificationLog(path)  # the connector starting again on the same file

    assert restarted.recent(10) == [sent]


def test_a_redelivery_after_a_restart_is_still_a_duplicate(tmp_path):
    path = tmp_path / "notifications.jsonl"
    sent = notification(
        records=[
            {"record_id": "LA-1\u2028A", "reasons": ["CHILD_PROTECTION_PLAN"]},
        ]
    )
    body = sent.model_dump_json().encode()
    with notification_receiver(NotificationLog(path)) as client:
        client.post(
            NOTIFICATIONS_PATH,
            content=body,
            headers={"authorization": GATEWAY_SIGNER.authorization("social_care", body)},
        )
    with notification_receiver(NotificationLog(path)) as client:
        again = client.post(
            NOTIFICATIONS_PATH,
            content=body,
            headers={"authorization": GATEWAY_SIGNER.authorization("social_care", body)},
        )
    assert again.status_code == 200
    assert again.json()["duplicate"] is True


def test_a_last_line_a_crash_cut_short_is_dropped_and_the_log_goes_on(tmp_path):
    """Written, not yet synced when the connector died: never acknowledged, so the gateway sends
    it again; the log keeps what was whole and appends after it."""
    path = tmp_path / "notifications.jsonl"
    first, second = notification(), notification()
    path.write_text(first.model_dump_json() + "\n" + second.model_dump_json()[:40])

    log = NotificationLog(path)

    assert log.recent(10) == [first]
    assert path.read_text() == first.model_dump_json() + "\n"


def test_a_line_that_is_no_notification_stops_the_log_without_showing_it(tmp_path):
    path = tmp_path / "notifications.jsonl"
    path.write_text('{"accessor": "Eddie Clinician"}\n')

    with pytest.raises(ValueError, match="line 1 is not a notification") as refused:
        NotificationLog(path)

    assert "Eddie" not in str(refused.value)
