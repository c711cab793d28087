"""``veil report``: the HTML report from a ``veil sanitize`` directory or the topics.

    veil report DIR [--out FILE] [--key K]
    veil report --since 1h [--until ISO] --bootstrap HOST:PORT [--prefix veil] --out FILE

Exit code 0 when written (whatever the audit chain's state: the report shows it), 2 for
usage errors. ``veil sanitize --report`` writes ``DIR/report.html`` with a review gallery.
"""

from __future__ import annotations

import datetime as dt
import os
import re


def register(sub, with_bootstrap) -> None:
    p = with_bootstrap(
        sub.add_parser(
            "report",
            help="an HTML privacy report from a veil sanitize directory or the topics",
            description="Writes one self-contained HTML file (opens offline): records per "
            "modality and outcome, sensitivity and regimes, entities by type, dead-letter "
            "codes, step-time and size distributions, and the audit chain's verification.",
        )
    )
    p.add_argument("dir", nargs="?", metavar="DIR", help="a veil sanitize output directory")
    p.add_argument("--out", default=None, metavar="FILE", help="default: DIR/report.html")
    p.add_argument(
        "--since", default=None, help="topics: window start, e.g. 1h, 30m, 2d or an ISO time"
    )
    p.add_argument("--until", default=None, help="topics: window end (default: now)")
    p.add_argument("--prefix", default="veil", help="topics: topic prefix (default: veil)")
    p.add_argument("--policy", default=None, help="policy YAML (default: packaged policy)")
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEYFILE|kms:URI",
        help="audit MAC key(s) for the chain check (default $VEIL_AUDIT_KEY_FILE)",
    )


def parse_when(text: str, now: dt.datetime) -> dt.datetime:
    """``1h``, ``30m``, ``2d``, ``45s`` before ``now``, or an ISO 8601 time (UTC if naive)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - dt.timedelta(**{unit: float(match.group(1))})
    when = dt.datetime.fromisoformat(text.strip())
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def audit_keys(refs):
    from veil.pipelines.cli import CliError
    from veil.transforms.audit_chain import AUDIT_KEY_ENV, AuditKeyUnavailable, resolve_mac_key

    refs = list(refs) or ([os.environ[AUDIT_KEY_ENV]] if os.environ.get(AUDIT_KEY_ENV) else [])
    try:
        return [resolve_mac_key(ref, env=None) for ref in refs]
    except AuditKeyUnavailable:
        raise CliError("an audit key given with --key cannot be read", 2) from None


def cmd_report(args, _):
    from veil.pipelines.cli import CliError, _client_config
    from veil.pipelines.report import from_directory, from_topics, write_report

    keys = audit_keys(args.key)
    if (args.dir is None) == (args.since is None):
        raise CliError("give a veil sanitize directory, or --since for the topics", 2)
    if args.dir is not None:
        if not os.path.isdir(args.dir):
            raise CliError(f"{args.dir}: no such directory", 2)
        try:
            data = from_directory(args.dir, keys, args.policy)
        except FileNotFoundError as exc:
            raise CliError(str(exc), 2) from None
        out = args.out or os.path.join(args.dir, "report.html")
    else:
        if not args.out:
            raise CliError("--out FILE is required with --since", 2)
        now = dt.datetime.now(dt.UTC)
        try:
            since = parse_when(args.since, now)
            until = parse_when(args.until, now) if args.until else now
        except ValueError:
            raise CliError("--since/--until: expected e.g. 1h, 30m or an ISO time", 2) from None
        data = from_topics(_client_config(args), args.prefix, since, until, keys)
        out = args.out
    path = write_report(out, data)
    print(
        f"report: {path} ({len(data.records)} record(s); audit chain: "
        f"{'not checked' if data.chain is None else data.chain.summary})"
    )
    return 0
