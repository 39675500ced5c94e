"""Change control for the contract: the schema against the last released one."""

import pytest

from gateway.cli import main
from resolvers.contract import (
    DECLARED_FILE,
    RELEASED_FILE,
    Declared,
    changes_since_release,
    compare,
    load_declared,
)
from resolvers.schema import export_sdl

RELEASED = RELEASED_FILE.read_text(encoding="utf-8")


def _without_justification() -> str:
    """The released schema, in a copy, with one field taken out."""
    field = '  """Their free-text reason."""\n  justification: String\n\n'
    assert RELEASED.count(field) == 1
    return RELEASED.replace(field, "")


def test_the_schema_breaks_nothing_released_that_is_not_declared():
    changes = changes_since_release(export_sdl())
    assert changes.undeclared == (), changes.report()
    assert changes.stale == (), changes.report()


def test_this_release_changes_the_contract_by_additions_and_deprecations_only():
    changes = changes_since_release(export_sdl())
    assert changes.breaking == ()
    assert changes.declared == ()
    assert {c.kind for c in changes.dangerous} <= {"OPTIONAL_ARG_ADDED", "VALUE_ADDED_TO_ENUM"}


def test_a_removed_field_is_reported_as_breaking():
    changes = compare(RELEASED, _without_justification())

    assert [(c.kind, c.description) for c in changes.breaking] == [
        ("FIELD_REMOVED", "Field AuditEntry.justification was removed.")
    ]
    assert not changes.ok
    assert "NOT DECLARED" in changes.report()


def test_a_declared_breaking_change_passes_and_says_why():
    declared = (
        Declared("Field AuditEntry.justification was removed.", "reviewed: no portal reads it"),
    )

    changes = compare(RELEASED, _without_justification(), declared)

    assert changes.ok
    assert "reviewed: no portal reads it" in changes.report()


def test_a_declaration_of_a_change_that_does_not_happen_fails():
    changes = compare(RELEASED, RELEASED, (Declared("WithheldField.reason was removed.", "x"),))
    assert changes.stale
    assert not changes.ok


def test_a_changed_field_type_is_breaking_and_an_added_enum_value_dangerous():
    changed = RELEASED.replace("  purpose: String!\n", "  purpose: Purpose!\n").replace(
        "  EMERGENCY_OVERRIDE\n}", "  EMERGENCY_OVERRIDE\n  NEW_PURPOSE\n}"
    )

    changes = compare(RELEASED, changed)

    assert [c.kind for c in changes.breaking] == ["FIELD_CHANGED_KIND"]
    assert [c.kind for c in changes.dangerous] == ["VALUE_ADDED_TO_ENUM"]


def test_every_declaration_needs_a_reason():
    with pytest.raises(ValueError, match="no `reason`"):
        load_declared('[[breaking]]\nchange = "WithheldField.reason was removed."\n')


def test_the_shipped_declarations_file_loads():
    assert load_declared(DECLARED_FILE.read_text(encoding="utf-8")) == ()


def test_the_cli_prints_the_changes_for_a_reviewer(capsys):
    assert main(["schema", "--breaking"]) == 0
    out = capsys.readouterr().out
    assert "schema-released.graphql" in out
    assert "OPTIONAL_ARG_ADDED: An optional argument Query.child(identify:) was added." in out
