"""Text detection quality and speed: Veil's text branch vs Presidio's defaults, one run.

    .venv/bin/python bench/text/run.py [--records 2000] [--seed 20261128] [--json out.json]

Both systems see the same generated corpus (``bench/text/corpus.py``), one record at a
time in one process on one core, as the pipeline calls them:

* **Veil**: ``TextHandler.process`` with the packaged default policy (detect, merge,
  classify, anonymize). Timed with the NER sentence cache off (every sentence parsed),
  and again with it on.
* **Presidio defaults**: ``AnalyzerEngine().analyze(text, language="en")`` with every
  predefined recognizer and no score threshold, then ``AnonymizerEngine().anonymize``
  (replace with ``<TYPE>``). The only changes from a stock install: the spaCy model is
  the packaged ``en_core_web_sm`` (Presidio's default ``en_core_web_lg`` is not
  installed and would be downloaded) and the e-mail recognizer uses tldextract's bundled
  suffix list (no network).

Metrics, over gold spans:

* recall per entity: a gold value counts as found when every non-space character of it
  lies inside an anonymized span (of any type);
* precision per entity: predicted spans whose type maps to the entity and overlap a gold
  value of it, over all predicted spans mapping to it;
* exact-value leak: share of gold values still present verbatim in the output;
* token-level leak: share of gold value tokens (2+ characters) not fully anonymized;
* over-redaction: share of words outside every gold span that an anonymized span touches;
* speed: words (whitespace-separated) per CPU-second of the one benchmark process
  (``time.process_time``: per core, and robust to other load on the machine; wall time
  is printed too); the best of ``--repeat`` interleaved passes per system, after a
  warm-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import DIRECT, generate  # noqa: E402

# Which predicted labels count as which gold entity (for per-entity precision).
LABELS = {
    "PERSON": {"PERSON"},
    "STREET_ADDRESS": {"STREET_ADDRESS", "LOCATION"},
    "PHONE_NUMBER": {"PHONE_NUMBER"},
    "EMAIL_ADDRESS": {"EMAIL_ADDRESS"},
    "CREDIT_CARD": {"CREDIT_CARD"},
    "US_SSN": {"US_SSN"},
    "IBAN_CODE": {"IBAN_CODE"},
    "IP_ADDRESS": {"IP_ADDRESS"},
    "DATE_TIME": {"DATE_TIME"},
    "LOCATION": {"LOCATION"},
    "NRP": {"NRP", "RELIGION", "POLITICAL_AFFILIATION"},
    "CREDENTIAL": {"CREDENTIAL"},
}
_WORD = re.compile(r"\w+")


def presidio_engines():
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import EmailRecognizer
    from presidio_anonymizer import AnonymizerEngine

    from veil.transforms.text import spacy_model_path

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": str(spacy_model_path())}],
        }
    ).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str):
            return extractor(pattern_text).fqdn != ""

    registry.recognizers = [r for r in registry.recognizers if not isinstance(r, EmailRecognizer)]
    registry.add_recognizer(OfflineEmailRecognizer())
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])
    return analyzer, AnonymizerEngine()


class PresidioRunner:
    """Presidio's analyzer + anonymizer with default settings, one record at a time."""

    def __init__(self):
        self.analyzer, self.anonymizer = presidio_engines()

    def one(self, text: str):
        results = self.analyzer.analyze(text, language="en")
        out = self.anonymizer.anonymize(text, results).text
        return [(r.start, r.end, r.entity_type) for r in results], out

    def run(self, samples) -> list:
        return [self.one(s.text) for s in samples]


class VeilRunner:
    """Veil's ``TextHandler.process`` (as the pipeline calls it), one record at a time."""

    def __init__(self):
        from veil.transforms.classification import load_policy
        from veil.transforms.text import TextHandler

        self.policy = load_policy()
        self.handler = TextHandler(self.policy)
        self.model = self.handler.load()

    def process(self, samples, cache: bool) -> list:
        """The timed part: sanitized payloads."""
        from veil.transforms.privacy import settle
        from veil.transforms.records import Source, WorkItem
        from veil.transforms.text import engine as text_module

        text_module.NER_CACHE_SIZE = 4096 if cache else 0
        self.model.ner_cache.clear()
        payloads = []
        for i, s in enumerate(samples):
            record = {
                "record_id": f"b{i}",
                "subject_key": "bench",
                "content_type": "text/plain",
                "payload": s.text.encode(),
                "attributes": {},
                "modality": None,
                "event_time": None,
            }
            item = WorkItem(Source("bench", 0, i), record, "text")
            settle(item, self.handler.process(self.model, item))
            payloads.append(item.sanitized_payload.decode())
        text_module.NER_CACHE_SIZE = 4096
        return payloads

    def with_spans(self, samples, payloads) -> list:
        """``(spans, output)`` per sample, for scoring (outside the timing)."""
        from veil.transforms.text import detect, select_spans

        threshold = self.policy.text.score_threshold
        return [
            (select_spans(detect(self.model, s.text, self.policy.text), threshold), out)
            for s, out in zip(samples, payloads)
        ]


def run_veil(samples, cache: bool = True):
    """Veil's ``(spans, output)`` per sample and the wall time (tests, quick looks)."""
    runner = VeilRunner()
    started = time.perf_counter()
    payloads = runner.process(samples, cache)
    elapsed = time.perf_counter() - started
    return runner.with_spans(samples, payloads), elapsed


def timed(fn):
    """``(result, cpu_seconds, wall_seconds)`` of ``fn()`` in this process."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def _covered(intervals, start, end, text) -> bool:
    return all(
        any(s <= i < e for s, e in intervals) for i in range(start, end) if not text[i].isspace()
    )


def score(samples, outputs) -> dict:
    per = {e: {"gold": 0, "found": 0, "leaked": 0, "pred": 0, "pred_ok": 0} for e in LABELS}
    tokens = leaked_tokens = words = over = 0
    direct_values = direct_leaks = 0
    for sample, (pred, out_text) in zip(samples, outputs):
        text = sample.text
        intervals = [(s, e) for s, e, _ in pred]
        for start, end, entity in sample.spans:
            row = per[entity]
            row["gold"] += 1
            value = text[start:end]
            if _covered(intervals, start, end, text):
                row["found"] += 1
            leaked = value in out_text
            row["leaked"] += leaked
            if entity in DIRECT:
                direct_values += 1
                direct_leaks += leaked
            for m in _WORD.finditer(value):
                if len(m.group()) < 2:
                    continue
                tokens += 1
                if not _covered(intervals, start + m.start(), start + m.end(), text):
                    leaked_tokens += 1
        for s, e, label in pred:
            for entity, labels in LABELS.items():
                if label in labels:
                    per[entity]["pred"] += 1
                    if any(gs < e and s < ge and ge_t == entity for gs, ge, ge_t in sample.spans):
                        per[entity]["pred_ok"] += 1
        for m in _WORD.finditer(text):
            if any(gs <= m.start() < ge for gs, ge, _ in sample.spans):
                continue
            words += 1
            if any(s < m.end() and m.start() < e for s, e in intervals):
                over += 1
    entities = {
        e: {
            "gold": r["gold"],
            "recall": r["found"] / r["gold"] if r["gold"] else None,
            "precision": r["pred_ok"] / r["pred"] if r["pred"] else None,
            "exact_leak": r["leaked"] / r["gold"] if r["gold"] else None,
        }
        for e, r in per.items()
    }
    return {
        "entities": entities,
        "direct_exact_leak": direct_leaks / direct_values,
        "all_exact_leak": sum(r["leaked"] for r in per.values())
        / sum(r["gold"] for r in per.values()),
        "token_leak": leaked_tokens / tokens,
        "over_redaction": over / words,
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best counts")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    samples = generate(args.records, args.seed)
    words = sum(len(s.text.split()) for s in samples)
    gold = sum(len(s.spans) for s in samples)
    print(
        f"corpus: {len(samples)} records, {words} words, {gold} labelled PII values "
        f"(seed {args.seed})"
    )

    veil, presidio = VeilRunner(), PresidioRunner()
    veil.process(samples[:20], cache=False)  # warm-up both
    presidio.run(samples[:20])
    best = {"veil": (1e9, 1e9), "veil_cached": (1e9, 1e9), "presidio": (1e9, 1e9)}
    outputs = {}
    # Interleaved passes, the best of --repeat for each: other load on the machine
    # hits both systems alike.
    for _ in range(args.repeat):
        for name, fn in (
            ("veil", lambda: veil.process(samples, cache=False)),
            ("presidio", lambda: presidio.run(samples)),
            ("veil_cached", lambda: veil.process(samples, cache=True)),
        ):
            outputs[name], cpu, wall = timed(fn)
            best[name] = (min(best[name][0], cpu), min(best[name][1], wall))
    veil_out = veil.with_spans(samples, outputs["veil"])
    results = {"veil": score(samples, veil_out), "presidio": score(samples, outputs["presidio"])}
    speed = {name: words / cpu for name, (cpu, _) in best.items()}
    wall_speed = {name: words / wall for name, (_, wall) in best.items()}

    print()
    print(
        "| Entity | Gold | Veil recall | Veil precision | Veil exact leak "
        "| Presidio recall | Presidio precision | Presidio exact leak |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for entity in LABELS:
        v, p = results["veil"]["entities"][entity], results["presidio"]["entities"][entity]
        print(
            f"| {entity}{' (direct)' if entity in DIRECT else ''} | {v['gold']} | "
            f"{_fmt(v['recall'])} | {_fmt(v['precision'])} | {_fmt(v['exact_leak'])} | "
            f"{_fmt(p['recall'])} | {_fmt(p['precision'])} | {_fmt(p['exact_leak'])} |"
        )
    print()
    print("| Metric | Target | Veil | Presidio defaults |")
    print("| --- | --- | ---: | ---: |")
    for key, label, target in (
        ("direct_exact_leak", "Exact-value leak, direct identifiers", "<= 1%"),
        ("all_exact_leak", "Exact-value leak, all PII", ""),
        ("token_leak", "Token-level leak", "<= 3%"),
        ("over_redaction", "Over-redaction (non-PII words removed)", "<= 10%"),
    ):
        print(
            f"| {label} | {target} | {_fmt(results['veil'][key])} | "
            f"{_fmt(results['presidio'][key])} |"
        )
    print(
        f"| Speed, words per CPU-second, one process (NER cache off) | >= 10x | "
        f"{speed['veil']:,.0f} | {speed['presidio']:,.0f} |"
    )
    print(f"| Same, NER cache on | | {speed['veil_cached']:,.0f} | |")
    print(
        f"| Speed, words per wall-second (NER cache off) | | {wall_speed['veil']:,.0f} | "
        f"{wall_speed['presidio']:,.0f} |"
    )
    print()
    print(
        f"speed ratio Veil / Presidio (CPU time): {speed['veil'] / speed['presidio']:.1f}x "
        f"(NER cache on: {speed['veil_cached'] / speed['presidio']:.1f}x; wall time, cache "
        f"off: {wall_speed['veil'] / wall_speed['presidio']:.1f}x)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "results": results,
                    "speed_cpu": speed,
                    "speed_wall": wall_speed,
                    "records": len(samples),
                    "words": words,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
