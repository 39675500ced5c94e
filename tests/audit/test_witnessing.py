"""Who the gateway sends its checkpoints to, from the sources file: the sources with
`witness = true` and the `[[witnesses]]` (tests/test_witness_e2e.py sends to them)."""

import pytest
from pydantic import ValidationError

from gateway.audit import configured_witnesses
from gateway.config import Settings, load_sources_file

SOURCES = """
[[sources]]
name = "health"
url = "http://health.example.test:9001/"
provides = ["nhs_number"]
witness = true

[[sources]]
name = "education"
url = "http://education.example.test"
provides = ["school"]

[[witnesses]]
name = "ig-team"
url = "https://witness.example.test/base"
timeout_ms = 2000
"""


def test_witnessing_sources_and_configured_witnesses_are_sent_checkpoints(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES)
    config = load_sources_file(path)

    witnesses = configured_witnesses("childlookup-gateway", config.sources, config.witnesses, {})

    assert [(w.name, w.url, w.timeout_s) for w in witnesses] == [
        ("health", "http://health.example.test:9001/v1/witness/checkpoints", 1.0),
        ("ig-team", "https://witness.example.test/base/v1/witness/checkpoints", 2.0),
    ]


def test_a_witness_named_like_a_witnessing_source_is_refused(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES.replace('name = "ig-team"', 'name = "health"'))
    with pytest.raises(ValueError, match=r"witness names .* must be unique"):
        load_sources_file(path)


def test_a_gateway_id_that_cannot_name_a_log_is_refused_only_with_witnesses(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES)
    config = load_sources_file(path)
    url_id = "https://gateway.example.test/"
    with pytest.raises(ValueError, match="CHILDLOOKUP_GATEWAY_ID"):
        configured_witnesses(url_id, config.sources, config.witnesses, {})
    assert configured_witnesses(url_id, config.sources[1:], [], {}) == ()


def test_the_log_is_named_by_the_gateway_id_unless_a_log_name_is_set():
    assert Settings(gateway_id="gw-east").resolved_audit_log_name() == "gw-east"
    renamed = Settings(gateway_id="gw-east", audit_log_name="gw-east-2")
    assert renamed.resolved_audit_log_name() == "gw-east-2"
    with pytest.raises(ValidationError, match="audit_log_name"):
        Settings(audit_log_name="https://not-a-name/")
