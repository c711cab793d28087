"""The report as one self-contained HTML file: inline CSS, charts and images as data
URIs, no script, and a Content-Security-Policy that lets the page load nothing else."""

from __future__ import annotations

import html
from collections import Counter

from veil.pipelines.report import charts
from veil.pipelines.report.data import ReportData

SECTIONS = (
    ("summary", "Summary"),
    ("outcomes", "Records by modality and outcome"),
    ("classification", "Sensitivity levels and regimes"),
    ("entities", "Entities by type"),
    ("dead-letters", "Dead-letter codes"),
    ("distributions", "Privacy-step time and record sizes"),
    ("audit-chain", "Audit chain"),
)
RAW_WARNING = "Contains raw personal data: generated with --show-originals. Do not share."

_CSS = """
:root { --ink:#1f2430; --muted:#5f6670; --line:#e3e6eb; --bg:#f6f7f9; --ok:#2e7d5b; --bad:#c0392b; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif;
       color:var(--ink); background:var(--bg); }
header.top { background:#1f2430; color:#fff; padding:22px 32px 18px; }
header.top h1 { margin:0 0 4px; font-size:22px; letter-spacing:.2px; }
header.top .meta { color:#c8ccd4; font-size:12.5px; }
main { max-width:1120px; margin:0 auto; padding:18px 24px 48px; }
nav.toc { display:flex; flex-wrap:wrap; gap:6px 14px; margin:4px 0 14px; font-size:12.5px; }
nav.toc a { color:#3d6fb6; text-decoration:none; }
section.card { background:#fff; border:1px solid var(--line); border-radius:8px;
               padding:16px 20px 18px; margin:14px 0; }
section.card h2 { margin:0 0 10px; font-size:16px; }
.grid2 { display:grid; grid-template-columns: 1fr 1fr; gap:18px; }
.grid2 h3 { margin:0 0 6px; font-size:13px; color:var(--muted); font-weight:600; }
img.chart { width:100%; height:auto; display:block; }
.tiles { display:grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap:10px; }
.tile { border:1px solid var(--line); border-radius:6px; padding:10px 12px; }
.tile .n { font-size:24px; font-weight:700; }
.tile .l { font-size:12px; color:var(--muted); }
.tile.ok .n { color:var(--ok); } .tile.bad .n { color:var(--bad); }
.empty { color:var(--muted); font-style:italic; }
table.plain { border-collapse:collapse; font-size:12.5px; margin-top:8px; }
table.plain td, table.plain th { border-bottom:1px solid var(--line); padding:4px 10px 4px 0; text-align:left; }
.status { display:inline-block; padding:2px 10px; border-radius:12px; font-weight:700; color:#fff; }
.status.ok { background:var(--ok); } .status.bad { background:var(--bad); } .status.none { background:#8a8f98; }
.note { color:var(--muted); font-size:12.5px; }
.raw-banner { position:fixed; top:0; left:0; right:0; z-index:10; background:#c0392b; color:#fff;
              text-align:center; font-weight:700; padding:6px; font-size:13px; letter-spacing:.3px; }
body.raw { padding-top:32px; }
.item { border-top:1px solid var(--line); padding:14px 0; }
.item:first-of-type { border-top:none; }
.item .head { display:flex; flex-wrap:wrap; gap:8px; align-items:baseline; margin-bottom:8px; }
.item .rid { font-family:"DejaVu Sans Mono", monospace; font-size:12px; color:var(--muted); }
.chip { display:inline-block; font-size:11px; padding:1px 8px; border-radius:10px; background:#eef1f5; }
.chip.level { color:#fff; font-weight:700; }
.pair { display:grid; grid-template-columns: 1fr 1fr; gap:14px; }
.pair .lbl { font-size:11px; font-weight:700; text-transform:uppercase; color:var(--muted); margin-bottom:4px; }
.pair .lbl.raw { color:var(--bad); }
.orig { outline:2px dashed var(--bad); outline-offset:4px; }
img.thumb { max-width:100%; height:auto; border-radius:4px; border:1px solid var(--line); }
p.text-sample { font-size:14.5px; line-height:2.3; margin:0; }
mark.pii { background:hsl(var(--hue) 70% 88%); border-bottom:2px solid hsl(var(--hue) 55% 40%);
           padding:1px 3px; border-radius:3px; position:relative; }
mark.pii .tag { position:absolute; left:0; top:-1.25em; white-space:nowrap; font-size:9.5px;
                line-height:1; color:hsl(var(--hue) 55% 28%); font-weight:700; }
mark.pii.flat { padding:0 2px; border-bottom-width:1px; }
pre.json-sample { background:#f6f7f9; padding:10px; border-radius:6px; font-size:12px; overflow:auto; max-height:320px; margin:0; }
@media print { body { background:#fff; } section.card { break-inside: avoid; } }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _chart(uri: str | None, alt: str) -> str:
    if uri is None:
        return '<p class="empty">Nothing to show.</p>'
    return f'<img class="chart" src="{uri}" alt="{_e(alt)}">'


def _tile(number, label, kind="") -> str:
    return f'<div class="tile {kind}"><div class="n">{_e(number)}</div><div class="l">{_e(label)}</div></div>'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section class="card" id="{sid}" data-section="{sid}"><h2>{_e(title)}</h2>{body}</section>'


def render(data: ReportData, gallery=None, show_originals: bool = False) -> str:
    records = data.records
    outcomes = data.by_outcome()
    total = len(records)
    settled = outcomes["sanitized"] + outcomes["quarantined"] + outcomes["dead-lettered"]
    parts = []

    chain = data.chain
    chain_kind = "none" if chain is None else ("ok" if chain.ok else "bad")
    chain_word = {"none": "not checked", "ok": "verified", "bad": "FAILED"}[chain_kind]
    tiles = [
        _tile(total, "records in"),
        _tile(outcomes["sanitized"], "sanitized", "ok"),
        _tile(outcomes["quarantined"], "quarantined"),
        _tile(
            outcomes["dead-lettered"], "dead-lettered", "bad" if outcomes["dead-lettered"] else ""
        ),
        _tile(sum(sum(r.entity_counts.values()) for r in records), "entities found"),
        _tile(data.audit_events, "audit events"),
        _tile(f"{settled}/{total}", "records with an outcome", "ok" if settled == total else "bad"),
        _tile(chain_word, "audit chain", {"ok": "ok", "bad": "bad"}.get(chain_kind, "")),
    ]
    body = f'<div class="tiles">{"".join(tiles)}</div>'
    for note in data.notes:
        body += f'<p class="note">{_e(note)}</p>'
    parts.append(_section("summary", "Summary", body))

    pairs = [(r.modality or "unknown", r.outcome) for r in records]
    parts.append(
        _section(
            "outcomes",
            SECTIONS[1][1],
            _chart(charts.outcomes_by_modality(pairs), "records by modality and outcome"),
        )
    )

    published = [r for r in records if r.outcome in ("sanitized", "quarantined")]
    levels = Counter(r.sensitivity or "not recorded" for r in published)
    regimes = Counter(g for r in published for g in r.regimes)
    no_regime = sum(1 for r in published if not r.regimes)
    if no_regime:
        regimes["(none)"] = no_regime
    body = (
        '<div class="grid2"><div><h3>Sensitivity level</h3>'
        + _chart(
            charts.bars(
                levels,
                "records",
                charts.SENSITIVITY_COLOURS,
                width=charts.HALF,
                order=tuple(charts.SENSITIVITY_COLOURS),
            ),
            "sensitivity levels",
        )
        + "</div><div><h3>Regimes</h3>"
        + _chart(charts.bars(regimes, "records", default="#7b5ea7", width=charts.HALF), "regimes")
        + "</div></div>"
    )
    parts.append(_section("classification", SECTIONS[2][1], body))

    entities = Counter()
    for r in records:
        entities.update(r.entity_counts)
    parts.append(
        _section(
            "entities",
            SECTIONS[3][1],
            _chart(charts.bars(entities, "entities found", default="#3d6fb6"), "entities by type"),
        )
    )

    codes = Counter(r.error_code or "UNKNOWN" for r in records if r.outcome == "dead-lettered")
    stages = Counter(
        (r.stage or "?", r.error_code or "UNKNOWN") for r in records if r.outcome == "dead-lettered"
    )
    body = _chart(
        charts.bars(codes, "dead letters", default="#c0392b", width=charts.HALF),
        "dead-letter codes",
    )
    if stages:
        rows = "".join(
            f"<tr><td>{_e(s)}</td><td>{_e(c)}</td><td>{n}</td></tr>"
            for (s, c), n in sorted(stages.items())
        )
        table = f'<table class="plain"><tr><th>stage</th><th>code</th><th>records</th></tr>{rows}</table>'
        body = f'<div class="grid2"><div>{body}</div><div><h3>By stage</h3>{table}</div></div>'
    parts.append(_section("dead-letters", SECTIONS[4][1], body))

    steps = {}
    sizes = {}
    for r in records:
        if r.step_ms is not None:
            steps.setdefault(r.modality or "unknown", []).append(r.step_ms)
        if r.sanitized_bytes is not None:
            sizes.setdefault(r.modality or "unknown", []).append(r.sanitized_bytes)
    body = (
        '<div class="grid2"><div><h3>Privacy-step time per record</h3>'
        + _chart(
            charts.distributions(steps, "milliseconds (log scale)", log=True), "privacy step time"
        )
        + "</div><div><h3>Sanitized record size</h3>"
        + _chart(
            charts.distributions(sizes, "bytes (log scale)", log=True, unit="bytes"), "record sizes"
        )
        + "</div></div>"
    )
    parts.append(_section("distributions", SECTIONS[5][1], body))

    if chain is None:
        body = '<p><span class="status none">not checked</span></p>'
    else:
        body = f'<p><span class="status {chain_kind}">{chain_word}</span> {_e(chain.summary)}</p>'
        if chain.chains:
            rows = "".join(
                f"<tr><td>{_e(n)}</td><td>{s}</td></tr>" for n, s in chain.chains.items()
            )
            body += (
                f'<table class="plain"><tr><th>chain</th><th>head sequence</th></tr>{rows}</table>'
            )
        if chain.problems:
            body += (
                "<ul>" + "".join(f"<li><code>{_e(p)}</code></li>" for p in chain.problems) + "</ul>"
            )
        if not chain.macs_checked:
            body += '<p class="note">No audit key given: hash links checked, MACs not (pass --key or set $VEIL_AUDIT_KEY_FILE).</p>'
    parts.append(_section("audit-chain", SECTIONS[6][1], body))

    toc = list(SECTIONS)
    if gallery is not None:
        toc.append(("gallery", "Review gallery"))
        parts.append(_section("gallery", "Review gallery", _gallery(gallery, show_originals)))

    window = ""
    if data.window:
        since, until = data.window
        window = f" · window {since:%Y-%m-%d %H:%M:%S} to {until:%Y-%m-%d %H:%M:%S} UTC"
    meta = (
        f"{_e(data.source)}{_e(window)} · generated {data.generated:%Y-%m-%d %H:%M:%S} UTC · "
        f"policy {_e(', '.join(data.policy_versions) or '-')} · pipeline {_e(', '.join(data.pipeline_versions) or '-')}"
    )
    title = "Veil privacy report" + (" — RAW PERSONAL DATA" if show_originals else "")
    banner = (
        f'<div class="raw-banner" data-raw-warning>{_e(RAW_WARNING)}</div>'
        if show_originals
        else ""
    )
    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name in toc)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head>"
        f'<body class="{"raw" if show_originals else ""}">{banner}'
        f'<header class="top"><h1>{_e(title)}</h1><div class="meta">{meta}</div></header>'
        f'<main><nav class="toc">{nav}</nav>{"".join(parts)}</main></body></html>\n'
    )


def _gallery(items, show_originals: bool) -> str:
    if not items:
        return '<p class="empty">No sanitized records to show.</p>'
    out = []
    if show_originals:
        out.append(
            f'<p class="note"><strong>{_e(RAW_WARNING)}</strong> Originals are outlined in red.</p>'
        )
    else:
        out.append(
            '<p class="note">Sanitized output only. Originals are shown only when the report is made with --show-originals.</p>'
        )
    for item in items:
        level = item.sensitivity or "not recorded"
        colour = charts.SENSITIVITY_COLOURS.get(level, "#8a8f98")
        chips = "".join(
            f'<span class="chip">{_e(t)} × {n}</span>'
            for t, n in sorted(item.entity_counts.items())
        )
        head = (
            f'<div class="head"><strong>{_e(item.modality)}</strong>'
            f'<span class="chip level" style="background:{colour}">{_e(level)}</span>{chips}'
            f'<span class="rid">{_e(item.record_id or item.key)}</span></div>'
        )
        if item.original_html is not None:
            body = (
                '<div class="pair"><div class="orig"><div class="lbl raw">original — raw personal data</div>'
                f'{item.original_html}</div><div><div class="lbl">sanitized</div>{item.html}</div></div>'
            )
        else:
            body = item.html
        note = f'<p class="note">{_e(item.note)}</p>' if item.note else ""
        out.append(
            f'<div class="item" data-modality="{_e(item.modality)}">{head}{body}{note}</div>'
        )
    return "".join(out)


__all__ = ["RAW_WARNING", "SECTIONS", "render"]
