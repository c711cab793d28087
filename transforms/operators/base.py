"""The operator interface, the registry, and what operators are given.

An operator is a small class (Presidio's ``Operator`` style): a ``name``, the JSON
Schema of its parameters (``params``, ``required``), ``validate`` for any check a schema
cannot express, and ``operate`` that turns one detected value into its replacement. Each
lives in its own module of this package and registers itself with ``@register``; the
package imports every module once, so adding an operator is one new file.

Example::

    @register
    class Upper(Operator):
        name = "upper"
        params = {"keep": {"type": "integer", "minimum": 0, "x-message": "must be >= 0"}}

        def operate(self, value, entity_type, params, ctx, field_path):
            return value.upper()
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from veil.transforms.keys import SecretKeys


class OperatorError(ValueError):
    """An operator name or parameter in the policy is invalid."""


@dataclasses.dataclass(frozen=True)
class OperatorSpec:
    """One operator and its parameters, as validated from the policy."""

    name: str
    params: tuple = ()  # sorted (key, value) pairs, hashable

    @classmethod
    def of(cls, name: str, params: dict | None = None) -> OperatorSpec:
        return cls(name, tuple(sorted((params or {}).items())))

    def param(self, key: str, default=None):
        return dict(self.params).get(key, default)

    @property
    def keyed(self) -> bool:
        """Whether the operator needs the pseudonym key."""
        return REGISTRY[self.name].keyed


@dataclasses.dataclass
class OperatorContext:
    """What keyed and protecting operators need about the record being processed."""

    subject_key: str
    keys: SecretKeys
    pending_protection: list = dataclasses.field(default_factory=list)


class Drop:
    """Sentinel result: remove the value (text span or structured field)."""

    def __repr__(self):
        return "DROP"


DROP = Drop()


class Operator:
    """One anonymization operator; subclasses set ``name`` and implement ``operate``."""

    name: ClassVar[str]
    #: JSON Schema of each parameter (property name -> schema); defaults live in operate.
    params: ClassVar[dict] = {}
    required: ClassVar[tuple] = ()
    #: Needs the pseudonym key (``OperatorContext.keys``).
    keyed: ClassVar[bool] = False

    @classmethod
    def schema(cls) -> dict:
        """The JSON Schema of ``{operator: NAME, ...params}``."""
        return {
            "type": "object",
            "properties": {"operator": {"const": cls.name}, **cls.params},
            "required": ["operator", *cls.required],
            "additionalProperties": False,
            "x-params-of": cls.name,
        }

    def validate(self, params: dict, where: str) -> None:
        """Checks beyond the schema; raises ``OperatorError`` naming ``where``."""

    def operate(self, value: str, entity_type: str, params: dict, ctx: OperatorContext,
                field_path: str):  # fmt: skip
        """The replacement of ``value`` (a string) or ``DROP``."""
        raise NotImplementedError


#: Operator name -> instance, in registration order (filled by ``register``).
REGISTRY: dict[str, Operator] = {}


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: adds the operator to ``REGISTRY`` (a name may be taken once)."""
    if cls.name in REGISTRY and type(REGISTRY[cls.name]) is not cls:
        raise ValueError(f"operator {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls


def operator_schema() -> dict:
    """One JSON Schema for an operator position in the policy: a bare name or a mapping."""
    names = list(REGISTRY)
    unknown = f"unknown operator {{value!r}} (known: {', '.join(names)})"
    shape = "must be an operator name or {operator: NAME, ...}"
    return {
        "type": ["string", "object"],
        "x-message": shape,
        "if": {"type": "string"},
        "then": {"enum": names, "x-message": unknown},
        "else": {
            "required": ["operator"],
            "properties": {"operator": {"type": "string", "x-message": shape}},
            "x-message": shape,
            "if": {"type": "object", "properties": {"operator": {"type": "string"}}},
            "then": {
                "properties": {"operator": {"enum": names, "x-message": unknown}},
                "allOf": [
                    {
                        "if": {"type": "object", "properties": {"operator": {"const": n}}},
                        "then": op.schema(),
                    }
                    for n, op in REGISTRY.items()
                ],
            },
        },
    }


def parse_operator(raw, where: str) -> OperatorSpec:
    """Validates ``{"operator": name, ...params}`` (or a bare name) from the policy."""
    from veil.transforms.validation import first_error  # jsonschema: only here

    problem = first_error(operator_schema(), raw, prefix=where)
    if problem:
        raise OperatorError(problem)
    return spec_of(raw, where)


def spec_of(raw, where: str) -> OperatorSpec:
    """An ``OperatorSpec`` from an operator entry the schema accepted; runs ``validate``."""
    if isinstance(raw, str):
        raw = {"operator": raw}
    params = {k: v for k, v in raw.items() if k != "operator"}
    REGISTRY[raw["operator"]].validate(params, where)
    return OperatorSpec.of(raw["operator"], params)


def apply_operator(
    spec: OperatorSpec,
    value: str,
    entity_type: str,
    ctx: OperatorContext,
    field_path: str = "payload",
):
    """Applies ``spec`` to ``value``; returns the replacement string or ``DROP``.

    Raises ``KeyUnavailable`` when a keyed operator has no key (the caller dead-letters).
    """
    operator = REGISTRY.get(spec.name)
    if operator is None:  # the policy's validation prevents this
        raise OperatorError(f"unknown operator {spec.name!r}")
    return operator.operate(value, entity_type, dict(spec.params), ctx, field_path)
