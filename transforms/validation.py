"""JSON Schema validation with messages that name the field and never echo a value.

The policy (``veil.transforms.classification``) and the operators
(``veil.transforms.operators``) are checked against JSON Schemas (Draft 2020-12, with
the ``jsonschema`` package) by ``first_error``. Its message names the field as a path
(``text.phone_regions[2]: expected an ISO 3166 code such as DE``) and says what was
expected, never what was found: a key value pasted into the wrong place must not end up
in a log. Three extension keywords, ignored by other JSON Schema tools, shape messages:

* ``x-message``: the text for any failure of that (sub)schema (``{value!r}`` is filled
  in only where the schema author marks the value as safe to show, e.g. operator names);
* ``x-note``: added to an unknown-key error in that mapping;
* ``x-params-of``: the mapping holds an operator's parameters (unknown keys are
  "operator NAME takes no parameter ...").

Integers and numbers are strict: ``true`` is not ``1`` and ``1.0`` is not an integer.

Example::

    first_error({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": "x"})
    # 'n: expected an integer'
"""

from __future__ import annotations

import difflib

from jsonschema import Draft202012Validator, validators

_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many(
    {
        "integer": lambda _, v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda _, v: isinstance(v, (int, float)) and not isinstance(v, bool),
    }
)
StrictValidator = validators.extend(Draft202012Validator, type_checker=_TYPES)

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}
# Which failure to report first when a document has several: unknown keys (a typo
# leaves a setting at its default), then shallow before deep, then schema order.
_RANK = {"additionalProperties": 0}


def path_text(path, prefix: str = "") -> str:
    """``("text", "phone_regions", 2)`` -> ``text.phone_regions[2]``."""
    out = prefix
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def first_error(schema: dict, instance, prefix: str = "", most: int = 3) -> str | None:
    """The failures of ``instance`` (the most telling first, at most ``most``, joined by
    ``; ``), or None if it is valid."""
    validator = StrictValidator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = list(validator.iter_errors(instance))
    if not errors:
        return None
    order = {id(e): i for i, e in enumerate(errors)}

    def rank(e):
        depth = len(e.absolute_path) + (e.validator == "required")
        return (_RANK.get(e.validator, 3) > 0, depth, order[id(e)])

    messages = []
    for error in sorted(errors, key=rank):
        message = describe(error, prefix)
        if message not in messages:
            messages.append(message)
    shown = "; ".join(messages[:most])
    return shown + (f" (and {len(messages) - most} more)" if len(messages) > most else "")


def describe(error, prefix: str = "") -> str:
    """One error as ``path: message`` (just ``message`` at the top level)."""
    where = path_text(error.absolute_path, prefix)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        return _unknown_key(error, where, schema)
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        name = path_text([missing[0]], where) if missing else where
        return f"missing required key '{name}'"
    message = schema.get("x-message")
    if message:
        value = error.instance if isinstance(error.instance, (str, int, float)) else None
        message = message.replace("{value!r}", repr(value))
    else:
        message = _generic(error)
    return f"{where}: {message}" if where else message


def _unknown_key(error, where: str, schema: dict) -> str:
    known = list(schema.get("properties", {}))
    extra = [k for k in error.instance if k not in known]
    if "x-params-of" in schema:
        takes = ", ".join(k for k in known if k != "operator") or "none"
        return (
            f"{where}: operator {schema['x-params-of']} takes no parameter "
            f"{sorted(map(str, extra))} (it takes: {takes})"
        )
    key = str(extra[0]) if extra else "?"
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{path_text([near[0]], where)}'?" if near else ""
    note = f"; {schema['x-note']}" if "x-note" in schema else ""
    return f"unknown key '{path_text([key], where)}'{hint} (valid here: {', '.join(known)}){note}"


def _generic(error) -> str:
    """A message from the failed keyword alone (never the instance)."""
    kind, expected = error.validator, error.validator_value
    if kind == "type":
        names = expected if isinstance(expected, list) else [expected]
        return "expected " + " or ".join(_TYPE_WORDS.get(n, n) for n in names)
    if kind in ("enum", "const"):
        return f"must be one of {list(expected) if kind == 'enum' else [expected]}"
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        return f"must be {bounds[kind]} {expected}"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"needs at least {expected} characters"
    if kind == "pattern":
        return f"must match {expected}"
    if kind == "minItems":
        return f"needs at least {expected} items"
    if kind == "format":
        return f"must be a valid {expected}"
    return f"fails the schema's '{kind}' check"
