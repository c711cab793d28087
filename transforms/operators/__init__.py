"""Anonymization operators, shared by every modality: a registry of small classes.

An operator turns one detected value into its replacement, as the policy says
(``anonymize`` section; docs/operators.md). Each is one module of this package, a
``veil.transforms.operators.base.Operator`` subclass registered with ``@register``;
importing the package imports every module once (underscore modules are helpers), so
adding an operator is one new file and nothing else.

=============  ==========================================================  ============
operator       what it outputs                                             parameters
=============  ==========================================================  ============
``redact``     ``[REDACTED]`` (text) / ``null`` (structured)               ``marker``
``replace``    ``<ENTITY_TYPE>``                                           ``label``
``mask``       ``*`` for all but the last N characters (separators kept)   ``keep_last``, ``char``
``pseudonym``  ``<TYPE_1a2b3c4d5e6f>``: HMAC-SHA256 of the normalized      ``length``
               value under the pseudonym key (same value, same output,
               in every record, topic and modality; not reversible;
               per subject when the key service holds the keys)
``generalize`` age band (``30-39``, ``90+``), 3-digit ZIP (HIPAA small     ``kind``, ``width``
               areas become ``000``), or a date's year
``date_shift`` the date moved by a per-subject offset derived from the     ``max_days``
               subject key under the pseudonym key (consistent for a
               subject; the format is kept)
``drop``       nothing (text: the span is removed; structured: the field)
``encrypt``    ``<TYPE:protected>``; the original goes to the protection  -
               stage (``WorkItem.pending_protection``), never to output
=============  ==========================================================  ============

Fail closed: a value an operator cannot handle (a ZIP code without five digits, a date
it cannot parse) becomes ``<ENTITY_TYPE>``, never the original.

Keys come through ``veil.transforms.keys`` (``SecretKeys.key_for(scope)``), the one
door to key material, named by a key URI (``veil.transforms.key_uri``: ``file:``,
``env:``, ``kms:``) in the policy's ``keys.pseudonym_key``. Keyed operators ask
``keys.key_for_subject(scope, subject_key)``: one key for all subjects with a key file;
with the key service a secret per subject that ``veil keys forget`` destroys.

Example::

    ctx = OperatorContext(subject_key="patient-7", keys=FileKeys(path))
    apply_operator(OperatorSpec("mask", (("keep_last", 4),)), "4111 1111 1111 1111",
                   "CREDIT_CARD", ctx)
    # '**** **** **** 1111'
"""

from __future__ import annotations

import importlib
import pkgutil

from veil.transforms.operators.base import (
    DROP,
    REGISTRY,
    Drop,
    Operator,
    OperatorContext,
    OperatorError,
    OperatorSpec,
    apply_operator,
    operator_schema,
    parse_operator,
    register,
    spec_of,
)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

from veil.transforms.operators._dates import format_date, parse_date  # noqa: E402
from veil.transforms.operators.date_shift import date_shift, subject_offset_days  # noqa: E402
from veil.transforms.operators.generalize import (  # noqa: E402
    GENERALIZE_KINDS,
    HIPAA_RESTRICTED_ZIP3,
    age_band,
    generalize,
    zip3,
)
from veil.transforms.operators.mask import mask  # noqa: E402
from veil.transforms.operators.pseudonym import normalize, pseudonym  # noqa: E402

#: The registered operator names.
OPERATORS = tuple(REGISTRY)
DEFAULT_KEY_ENV = "VEIL_PSEUDONYM_KEY_FILE"

__all__ = [
    "DROP",
    "DEFAULT_KEY_ENV",
    "GENERALIZE_KINDS",
    "HIPAA_RESTRICTED_ZIP3",
    "OPERATORS",
    "REGISTRY",
    "Drop",
    "Operator",
    "OperatorContext",
    "OperatorError",
    "OperatorSpec",
    "age_band",
    "apply_operator",
    "date_shift",
    "format_date",
    "generalize",
    "mask",
    "normalize",
    "operator_schema",
    "parse_date",
    "parse_operator",
    "pseudonym",
    "register",
    "spec_of",
    "subject_offset_days",
    "zip3",
]
