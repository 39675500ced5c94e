"""Driving regopy (rego-cpp) the way both the engine and the test runner need it.

rego-cpp's quirks are handled here, once:

- It prints compile errors on standard output unless its log level is lowered, which would corrupt
  the CLI's output; every interpreter made here is silent and errors travel as `PolicyError`.
- Errors come back as s-expressions with byte offsets; they become `file:line:col: message`.
- An undefined answer is the literal text "undefined" rather than an empty result.
- JSON must reach it as text with non-ASCII characters left unescaped. `regopy.Input` stores a
  string holding a quote or backslash unescaped (it then compares unequal to the same literal in a
  policy and comes back as invalid JSON), and a `\\u00e9` escape is kept as six characters, so
  "é" sent with json.dumps' defaults would not equal "é" in data.json.
- It ends the whole process (segfault or C++ terminate, no exception) when a rule that calls any
  built-in (`in`, `count`, `!=`, ...) is evaluated under `with input as {...}`, i.e. with the whole
  input replaced. Replacing parts of it (`with input.caller as {...}`) or data is safe, so the
  policy tests do that. Nothing here can catch the crash: it has to be avoided in the Rego.

Other rego-cpp departures from OPA bite in the Rego itself and are noted where they are worked
around: `sort()` of a set returns a set (plan.rego); `with x as <rule>` is undefined and an `every`
variable is lost inside a nested `every`, comprehension or `not` (the *_test.rego helpers); an
operator inside an object literal does not parse (plan_test.rego). It also accepts what OPA 1.x
rejects (pre-1.0 syntax, unknown functions, unsafe variables), so the policies are written in
strict Rego v1 by hand; tests/policy/test_parity.py compiles and tests them under real OPA too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from regopy import Bundle, Interpreter, LogLevel, Output, RegoError

from gateway.policy.bundle import PolicyBundle
from gateway.policy.errors import PolicyCompileError, PolicyError

_UNDEFINED: Final = "undefined"

# rego-cpp writes strings as <length>:<text>, so a message is read by its length, not up to a ")".
_ERROR_AT: Final = re.compile(r"\(error \d+:([^|\s]+)\|(\d+)\|")
_ERROR_MESSAGE: Final = re.compile(r"\(errormsg (\d+):")


def new_interpreter() -> Interpreter:
    """An interpreter that reports errors only through its return values."""
    interpreter = Interpreter()
    interpreter.log_level = LogLevel.NONE
    return interpreter


def as_rego_json(document: Any) -> str:
    """JSON text in the only form rego-cpp reads back faithfully (see the module notes)."""
    return json.dumps(document, ensure_ascii=False)


def _load_into(interpreter: Interpreter, bundle: PolicyBundle, modules: Mapping[str, str]) -> None:
    """Add the bundle's data and the given modules; one that does not parse is a PolicyError."""
    try:
        interpreter.add_data_json(as_rego_json(bundle.data))
        for path, source in modules.items():
            interpreter.add_module(path, source)
    except RegoError as error:
        raise _compile_failure(str(error), modules) from error


def compile_bundle(
    bundle: PolicyBundle, modules: Mapping[str, str], entrypoints: Sequence[str]
) -> Bundle:
    """Compile the data and modules once, so each evaluation only runs the entrypoint's plan."""
    builder = new_interpreter()
    _load_into(builder, bundle, modules)
    try:
        compiled = builder.build(None, list(entrypoints))
    except RegoError as error:
        raise _compile_failure(str(error), modules) from error
    if not compiled.ok():
        raise _compile_failure("rego-cpp gave no reason", modules)
    return compiled


def _compile_failure(error: str, modules: Mapping[str, str]) -> PolicyCompileError:
    # Files are named relative to the bundle, never by its directory: the reloader compiles a
    # snapshot in a temporary directory the policy officer has never seen.
    return PolicyCompileError(_error_lines(error, modules))


def answer_text(output: Output) -> str | None:
    """The JSON text of the one value a query produced, or None when it is undefined.

    Raises PolicyError when evaluation failed (with rego-cpp's explanation) or when the output is
    not a single value, which a query for one rule never legitimately gives.
    """
    if not output.ok():
        errors = output.node()
        details = " ".join(errors.at(index).json() for index in range(len(errors)))
        raise PolicyError(f"Policy evaluation failed: {_describe_error(details, {})}")
    text = str(output)
    if text == _UNDEFINED:
        return None
    match json.loads(text):
        case {"expressions": [value], **others} if not others:
            return as_rego_json(value)
        case _:
            raise PolicyError("rego-cpp answered with something other than one value.")


def _describe_error(text: str, modules: Mapping[str, str]) -> str:
    """rego-cpp's error s-expression as `file:line:col: message` a person can read, `; ` between."""
    return "; ".join(_error_lines(text, modules))


def _error_lines(text: str, modules: Mapping[str, str]) -> tuple[str, ...]:
    """Each error in rego-cpp's s-expression as `file:line:col: message`, innermost first as
    rego-cpp reports them; the raw text when it holds no message."""
    messages = []
    for match in _ERROR_MESSAGE.finditer(text):
        length = int(match.group(1))
        message = text[match.end() : match.end() + length]
        location = _last_location_before(text, match.start(), modules)
        messages.append(f"{location}: {message}" if location else message)
    return tuple(messages) if messages else (text,)


def _last_location_before(text: str, end: int, modules: Mapping[str, str]) -> str | None:
    located = None
    for match in _ERROR_AT.finditer(text, 0, end):
        located = match
    if located is None or located.group(1) not in modules:
        return None
    path, offset = located.group(1), int(located.group(2))
    before = modules[path].encode()[:offset].decode(errors="replace")
    line = before.count("\n") + 1
    column = len(before) - before.rfind("\n")
    return f"{path}:{line}:{column}"
