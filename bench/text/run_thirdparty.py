"""Text detection on third-party corpora: Veil vs Presidio's defaults, same run.

    .venv/bin/python bench/text/run_thirdparty.py [--records 600] [--seed 7] [--json out.json]

Sources (``bench/text/thirdparty.py``, provenance in ``bench/text/README.md``):
presidio-evaluator's templates filled by Faker in twelve locales, and the same templates
filled from presidio-evaluator's FakeNameGenerator.com rows. Per source, locale and
entity type: recall (every non-space character of the value inside an anonymized span),
exact-value leak (value still verbatim in the output), token leak (value tokens of 2+
characters not covered), and over-redaction (words outside gold values that a span
touches). Speed: words per CPU-second of this process, Veil's ``TextHandler.process``
vs Presidio's ``AnalyzerEngine`` + ``AnonymizerEngine`` with defaults, same samples.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PresidioRunner, VeilRunner, timed  # noqa: E402
from thirdparty import DIRECT, QUASI, faker_samples, fng_samples  # noqa: E402

_WORD = re.compile(r"\w+")


def _covered(intervals, start, end, text) -> bool:
    return all(
        any(s <= i < e for s, e in intervals) for i in range(start, end) if not text[i].isspace()
    )


def score(samples, outputs, group_of) -> dict:
    table = defaultdict(lambda: {"gold": 0, "found": 0, "leaked": 0, "tokens": 0, "tok_leak": 0})
    over = defaultdict(lambda: [0, 0])
    for sample, (pred, out_text) in zip(samples, outputs):
        text = sample.text
        intervals = [(s, e) for s, e, _ in pred]
        group = group_of(sample)
        for start, end, entity in sample.spans:
            for key in ((group, entity), ("all", entity)):
                row = table[key]
                row["gold"] += 1
                row["found"] += _covered(intervals, start, end, text)
                row["leaked"] += text[start:end] in out_text
                for m in _WORD.finditer(text[start:end]):
                    if len(m.group()) >= 2:
                        row["tokens"] += 1
                        row["tok_leak"] += not _covered(
                            intervals, start + m.start(), start + m.end(), text
                        )
        for m in _WORD.finditer(text):
            if any(gs <= m.start() < ge for gs, ge, _ in sample.spans):
                continue
            hit = any(s < m.end() and m.start() < e for s, e in intervals)
            for key in (group, "all"):
                over[key][0] += 1
                over[key][1] += hit
    return {"table": table, "over": over}


def summary(scored, groups) -> dict:
    out = {}
    for group in groups:
        rows = [(e, r) for (g, e), r in scored["table"].items() if g == group]

        def agg(entities, field, total):
            num = sum(r[field] for e, r in rows if e in entities)
            den = sum(r[total] for e, r in rows if e in entities)
            return num / den if den else None

        over = scored["over"][group]
        out[group] = {
            "direct_exact_leak": agg(DIRECT, "leaked", "gold"),
            "direct_token_leak": agg(DIRECT, "tok_leak", "tokens"),
            "quasi_removed": agg(QUASI, "found", "gold"),
            "over_redaction": over[1] / over[0] if over[0] else None,
            "direct_values": sum(r["gold"] for e, r in rows if e in DIRECT),
        }
    return out


def _pct(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=600, help="per source")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sources = {
        "templates+faker": faker_samples(args.records, args.seed),
        "templates+fakenamegenerator": fng_samples(args.records, args.seed),
    }
    veil, presidio = VeilRunner(), PresidioRunner()
    everything = [s for samples in sources.values() for s in samples]
    veil.process(everything[:20], cache=False)
    presidio.run(everything[:20])
    results, speed = {}, {}
    for name, samples in sources.items():
        words = sum(len(s.text.split()) for s in samples)
        payloads, v_cpu, _ = timed(lambda: veil.process(samples, cache=False))
        p_out, p_cpu, _ = timed(lambda: presidio.run(samples))
        v_out = veil.with_spans(samples, payloads)
        locales = sorted({s.locale for s in samples})
        group_of = (lambda s: s.locale) if name == "templates+faker" else (lambda s: "all")
        groups = locales + ["all"] if name == "templates+faker" else ["all"]
        v_scored, p_scored = score(samples, v_out, group_of), score(samples, p_out, group_of)
        results[name] = {
            "veil": summary(v_scored, groups),
            "presidio": summary(p_scored, groups),
            "veil_entities": {e: r for (g, e), r in v_scored["table"].items() if g == "all"},
            "presidio_entities": {e: r for (g, e), r in p_scored["table"].items() if g == "all"},
        }
        speed[name] = {"veil": words / v_cpu, "presidio": words / p_cpu}
        print(f"\n## {name}: {len(samples)} records, {words} words")
        print("\n| Locale | Direct exact leak (Veil / Presidio) | Direct token leak | "
              "Quasi-ids removed | Over-redaction |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | ---: |")
        for group in groups:
            v, p = results[name]["veil"][group], results[name]["presidio"][group]
            print(
                f"| {group} | {_pct(v['direct_exact_leak'])} / {_pct(p['direct_exact_leak'])} | "
                f"{_pct(v['direct_token_leak'])} / {_pct(p['direct_token_leak'])} | "
                f"{_pct(v['quasi_removed'])} / {_pct(p['quasi_removed'])} | "
                f"{_pct(v['over_redaction'])} / {_pct(p['over_redaction'])} |"
            )
        print("\n| Entity | Gold | Recall (Veil / Presidio) | Exact leak | Token leak |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for entity in sorted(results[name]["veil_entities"]):
            v = results[name]["veil_entities"][entity]
            p = results[name]["presidio_entities"][entity]
            print(
                f"| {entity} | {v['gold']} | {_pct(v['found'] / v['gold'])} / "
                f"{_pct(p['found'] / p['gold'])} | {_pct(v['leaked'] / v['gold'])} / "
                f"{_pct(p['leaked'] / p['gold'])} | "
                f"{_pct(v['tok_leak'] / max(1, v['tokens']))} / "
                f"{_pct(p['tok_leak'] / max(1, p['tokens']))} |"
            )
        s = speed[name]
        print(
            f"\nspeed (words per CPU-second): Veil {s['veil']:,.0f}, Presidio "
            f"{s['presidio']:,.0f}, ratio {s['veil'] / s['presidio']:.1f}x"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results": results, "speed": speed}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
