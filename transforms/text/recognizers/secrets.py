"""Secrets and credentials: cloud and API keys, tokens, JWTs, private keys, passwords.

Provider key shapes (AWS, GitHub, Slack, Stripe, Google), JWTs, PEM private keys,
passwords in URLs, ``password=...``/``token: ...`` assignments, and long high-entropy
strings mixing cases and digits.
"""

from __future__ import annotations

import re

from veil.transforms.text.recognizers.base import Pattern, entropy

_NOT_SECRETS = frozenset(
    "is was the a an to be required needed invalid valid expired reset changed incorrect "
    "wrong correct missing set updated protected hidden redacted strong weak".split()
)


def _secret_value(match) -> float | None:
    value = match.group("v")
    if value.lower() in _NOT_SECRETS:
        return None
    return 0.8


def _high_entropy(match) -> float | None:
    value = match.group()
    if not (re.search(r"[a-z]", value) and re.search(r"[A-Z]", value) and re.search(r"\d", value)):
        return None
    return 0.6 if entropy(value) >= 3.5 else None


PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "aws-access-key",
        "CREDENTIAL",
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
        1.0,
    ),
    Pattern(
        "github-token",
        "CREDENTIAL",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})\b"),
        1.0,
    ),
    Pattern("slack-token", "CREDENTIAL", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), 1.0),
    Pattern(
        "stripe-key",
        "CREDENTIAL",
        re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        1.0,
        needs_digit=False,
    ),
    Pattern("google-api-key", "CREDENTIAL", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"), 1.0),
    Pattern(
        "jwt",
        "CREDENTIAL",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"),
        1.0,
        needs_digit=False,
    ),
    Pattern(
        "private-key",
        "CREDENTIAL",
        re.compile(
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]{0,40}PRIVATE KEY-----|$)"
        ),
        1.0,
        needs_digit=False,
    ),
    Pattern(
        "url-credentials",
        "CREDENTIAL",
        re.compile(r"(?<=://)[^\s:/@]+:(?P<v>[^\s@/]+)(?=@)"),
        0.9,
        group="v",
        needs_digit=False,
    ),
    Pattern(
        "secret-assignment",
        "CREDENTIAL",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|passcode|passphrase|pin|secret|client[_\- ]?secret|"
            r"api[_\- ]?key|access[_\- ]?key|secret[_\- ]?key|access[_\- ]?token|auth[_\- ]?token|"
            r"token)\b[\"']?\s*(?:[:=]|\bis\b|\bto\b|\bwas\b)\s*[\"']?"
            r"(?P<v>[^\s\"',;]{4,})"
        ),
        0.8,
        validate=_secret_value,
        group="v",
        needs_digit=False,
    ),
    Pattern(
        "high-entropy",
        "CREDENTIAL",
        re.compile(r"(?<![\w/+=\-])[A-Za-z0-9_\-+/=]{24,512}(?![\w/+=\-])"),
        0.6,
        validate=_high_entropy,
    ),
)
