"""What a caller, or a log, may read of a GraphQL error: what was wrong, never the value sent.

graphql-core and strawberry write the offending input into their messages: the whole demographics
object when a field is missing, the text of a date that does not parse, a name sent where an enum
value belongs, the token a syntax error stopped at. In a child lookup those values are a child's
name and date of birth. `safe_message` rebuilds each such message from the parts that come from
the schema or the shape of the request - the variable, the field path, the type and field names,
what was expected - and drops the value. A value-bearing message of a shape not known here becomes
a generic one rather than being passed on; messages about the query itself (an unknown field, a
missing argument) name only the schema and the query's own structure and pass unchanged.

Written against graphql-core 3.3's message shapes; tests/test_error_messages.py sends every kind
of bad input through a real gateway and checks that no value comes back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

_TYPE: Final = r"[\w\[\]!]+"

_COERCION: Final = re.compile(
    r"(?P<subject>Variable '\$\w+'|Argument '\w+') has invalid (?P<default>default )?value"
    r"(?: at (?P<path>(?:\.\w+|\[\d+\])+))?: (?P<problem>.*)\Z",
    re.S,
)
"""An input value that does not coerce: graphql-core names the variable (or argument) and the
path inside it, then describes the problem - usually with the value."""

_UNPARSED_COERCION: Final = re.compile(
    r"(?P<subject>Variable '\$\w+'|Argument '\w+') (?:has|got) invalid", re.S
)
"""The same, in a shape not parsed above (graphql-core 3.2 put the value before the path)."""

_SCALAR_FORMATS: Final = {
    "Date": "YYYY-MM-DD",
    "DateTime": "e.g. 2026-03-14T09:30:00Z",
    "Time": "HH:MM:SS",
}

_PROBLEMS: Final[tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...]] = (
    (
        re.compile(
            rf"Expected value of type '(?P<type>{_TYPE})' to include required field "
            r"'(?P<field>\w+)'"
        ),
        lambda m: f"{m['type']} needs field '{m['field']}', which was not given.",
    ),
    (
        # The unknown field's name is left out too: typed into a query, it may be a value that
        # lost its quotes or comma ({givenName: "Amelia" Hart: ...}).
        re.compile(rf"Expected value of type '(?P<type>{_TYPE})' not to include unknown field"),
        lambda m: f"{m['type']} has a field it does not define.",
    ),
    (
        re.compile(rf"Expected value of type '(?P<type>{_TYPE})' to be an object"),
        lambda m: f"expected an object of type {m['type']}.",
    ),
    (
        re.compile(rf"Expected value of non-null type '(?P<type>{_TYPE})' not to be None"),
        lambda m: f"expected a value of type {m['type']}, not null.",
    ),
    (
        re.compile(rf"Expected a value of non-null type '(?P<type>{_TYPE})' to be provided"),
        lambda m: f"it is required, of type {m['type']}, and was not given.",
    ),
    (
        re.compile(r"(?P<type>String|Int|Float|Boolean|ID) cannot represent"),
        lambda m: f"expected a value of type {m['type']}.",
    ),
    (
        re.compile(r"Value cannot represent an? (?P<type>\w+)"),
        lambda m: f"expected a {m['type']}{_format(m['type'])}.",
    ),
    (
        re.compile(r"Value '.*' does not exist in '(?P<type>\w+)' enum\.", re.S),
        lambda m: f"expected one of the values of enum {m['type']}.",
    ),
    (
        re.compile(r"Enum '(?P<type>\w+)' cannot represent"),
        lambda m: f"expected one of the values of enum {m['type']}.",
    ),
    (
        re.compile(rf"Expected value of type '(?P<type>{_TYPE})'"),
        lambda m: f"expected a value of type {m['type']}.",
    ),
)
"""graphql-core's descriptions of a value of the wrong type, each with what is kept of it."""

_SYNTAX: Final = "Syntax Error: "
_SYNTAX_EXPECTED: Final = re.compile(r"(?P<expected>Expected [^,]*?), found (?P<found><EOF>|\w+)")
_SYNTAX_UNEXPECTED: Final = re.compile(r"Unexpected (?P<found><EOF>|\w+)")

_LIMITS: Final = re.compile(r"\d+ aliases found\. Allowed: \d+\Z")
"""Strawberry's alias limit, whose "found" is a count, not a value: passed unchanged."""

_MAY_HOLD_A_VALUE: Final = re.compile(r"\"|\bfound\b|\bvalue\s*:|\bvalue '", re.I)
"""Signs of a value in a message of a shape not recognised above: a double-quoted literal, or
graphql-core's "found ..." and "value: ..." / "value '...'" that precede one."""

GENERIC: Final = "A value in this request is not valid for the type the schema expects there."


def safe_message(message: str) -> str:
    """`message` with any input value taken out (see the module docstring)."""
    if message.startswith(_SYNTAX):
        return _SYNTAX + _syntax(message.removeprefix(_SYNTAX))
    coercion = _COERCION.match(message)
    if coercion is not None:
        where = f" at {coercion['path'].lstrip('.')}" if coercion["path"] else ""
        default = "default " if coercion["default"] else ""
        problem = _problem(coercion["problem"]) or "it is not a valid value of its type."
        return f"{coercion['subject']} has an invalid {default}value{where}: {problem}"
    unparsed = _UNPARSED_COERCION.match(message)
    if unparsed is not None:
        return f"{unparsed['subject']} has an invalid value."
    literal = _problem(message)
    if literal is not None:
        return f"Invalid value: {literal}"
    if _MAY_HOLD_A_VALUE.search(message) and not _LIMITS.match(message):
        return GENERIC
    return message


def _problem(text: str) -> str | None:
    for pattern, describe in _PROBLEMS:
        found = pattern.match(text)
        if found is not None:
            return describe(found)
    return None


def _format(scalar: str) -> str:
    known = _SCALAR_FORMATS.get(scalar)
    return f" ({known})" if known else ""


def _syntax(text: str) -> str:
    """A parse error's description without the token it stopped at: "Expected Name, found
    String." rather than the string itself; the error's location still points at it."""
    expected = _SYNTAX_EXPECTED.match(text)
    if expected is not None:
        return f"{expected['expected']}, found {expected['found']}."
    unexpected = _SYNTAX_UNEXPECTED.match(text)
    if unexpected is not None:
        return f"Unexpected {unexpected['found']}."
    return text.split(":", 1)[0].rstrip(".") + "."
