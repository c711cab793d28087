"""The text branch: policy-driven PII detection and anonymization, fully offline.

Detection (``detect``) combines, per record:

1. Pattern recognizers with checksums and context words (``veil.transforms.recognizers``):
   e-mail, URL, phone numbers in common formats, cards (Luhn), SSNs (SSA rules), IBANs
   (mod 97), IPs, US street addresses and PO boxes, ZIP codes, dates, ages, record /
   account / plan / licence / device numbers after their cue words, VINs, and secrets
   (cloud and API keys, tokens, JWTs, private keys, passwords in text).
2. Lexicons for NRP and the GDPR special categories (religion, politics, health, sexual
   orientation), as one merged pass.
3. Names: runs of capitalized words. Runs after a title or a cue word (``Dr.``, ``my
   name is``, ``Dear``, ``patient``) are names. Only the sentences that still hold an
   ambiguous run go through spaCy's NER (``en_core_web_sm``, the NER component alone,
   batched with ``nlp.pipe``, sentence results cached); a multi-word run NER does not
   type is still kept as a low-score ``PERSON`` (fail closed).
4. The policy's deny-list (always found) and allow-list (never anonymized).

Findings at or above ``text.score_threshold`` are merged (overlaps become one span with
the highest-scoring type), the record is classified, and each span gets the operator the
policy names for its type, modality and the record's regimes (``veil.transforms.operators``).

Everything loads once per worker process in ``DoFn.setup`` (see ``ApplyPrivacyStep``);
nothing touches the network: the spaCy model is the installed wheel, loaded from its path.

Example::

    model = load_text_model()
    detect(model, "Call Dr. Ada Byron on 212-555-0175")
    # [Finding("PHONE_NUMBER", 1.0, 22, 34, "pattern:phone-nanp"),
    #  Finding("PERSON", 0.85, 9, 18, "names:cue")]
    text = items | ApplyPrivacyStep(TextHandler(load_policy()))
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
from collections import OrderedDict
from pathlib import Path

from veil.transforms.classification import Policy, TextPolicy
from veil.transforms.operators import DROP, OperatorContext, apply_operator
from veil.transforms.text.handler import SPACY_MODEL_PACKAGE, TextHandler
from veil.transforms.text.normalize import normalize
from veil.transforms.text.recognizers import (
    DEFAULT_PHONE_REGIONS,
    Finding,
    cue_name_findings,
    lexicon_findings,
    name_candidates,
    pattern_findings,
)
from veil.transforms.text.recognizers.base import UPPER

_LOGGER = logging.getLogger(__name__)

DETECTOR_VERSION = "veil-text-3"
#: spaCy components Veil never uses (NER in en_core_web_sm has its own tok2vec).
UNUSED_COMPONENTS = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter")
NER_CACHE_SIZE = 4096
#: NER budget per record (characters of windows): past it, the remaining ambiguous
#: words are kept as low-score names (fail closed) instead of holding the partition.
NER_MAX_CHARS = 20_000
#: Windows are joined into documents of about this size for one ``nlp.pipe`` call.
NER_BATCH_CHARS = 4_000
_NER_TYPES = {
    "PERSON": ("PERSON", 0.85),
    "GPE": ("LOCATION", 0.6),
    "LOC": ("LOCATION", 0.6),
    "FAC": ("LOCATION", 0.6),
    "NORP": ("NRP", 0.6),
}
_ORG_WORDS = frozenset(
    "inc inc. llc ltd ltd. corp corp. corporation company co. bank university college "
    "hospital clinic group foundation association institute council department agency "
    "services systems technologies labs partners holdings school church committee team "
    "club society fund trust airlines insurance".split()
)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n")
_NEXT_WORD = re.compile(r"\s*\S+")
NER_WINDOW_WORDS = 6
_LOCATIVE = re.compile(r"\b(?:in|near|at|around|outside|across|into)\s+$", re.IGNORECASE)


@dataclasses.dataclass
class TextModel:
    """The loaded NER pipeline (or None when the policy turns NER off), versions, and
    the policy's Presidio recognizers (``veil.transforms.text.presidio``)."""

    nlp: object
    versions: dict
    ner_cache: OrderedDict = dataclasses.field(default_factory=OrderedDict)
    plugins: tuple = ()
    lexicon: EnglishLexicon | None = None


class EnglishLexicon:
    """English words from the spaCy model's own lemmatizer tables (WordNet's index,
    exceptions and suffix rules): a capitalised word at the start of a sentence that is
    no English word (``Gunilla``, ``Nyköping``) is more likely a name than not."""

    def __init__(self, lookups):
        index = lookups.get_table("lemma_index")
        exceptions = lookups.get_table("lemma_exc")
        rules = lookups.get_table("lemma_rules")
        words = set()
        for values in index.values():
            words.update(values)
        for table in exceptions.values():
            words.update(table.keys())
        self.words = frozenset(words)
        self.rules = tuple({(old, new) for table in rules.values() for old, new in table})

    def __contains__(self, word: str) -> bool:
        word = word.lower()
        if word in self.words:
            return True
        for old, new in self.rules:
            if word.endswith(old) and word[: len(word) - len(old)] + new in self.words:
                return True
        return False


def spacy_model_path() -> Path:
    """The installed spaCy pipeline's directory (no download, no network)."""
    import importlib

    package = importlib.import_module(SPACY_MODEL_PACKAGE)
    root = Path(package.__file__).parent
    return root / f"{SPACY_MODEL_PACKAGE}-{package.__version__}"


_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def load_text_model(ner: bool = True, recognizers: tuple = ()) -> TextModel:
    """The detectors, loaded once per process and shared by every step that detects
    text (text, structured, image OCR, audio transcripts): one spaCy copy, not four.
    ``recognizers``: the policy's Presidio recognizers (``TextPolicy.recognizers``)."""
    key = (ner, tuple(recognizers))
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = _load_text_model(ner, key[1])
        return model


def _load_text_model(ner: bool, recognizers: tuple) -> TextModel:
    """Loads the detectors (NER alone from the packaged spaCy model) and the plug-ins."""
    versions = {"veil-recognizers": DETECTOR_VERSION}
    plugins = ()
    lexicon = None
    if recognizers:
        from veil.transforms.text.presidio import load_plugins

        plugins = load_plugins(recognizers)
        versions["presidio-recognizers"] = str(len(plugins))
    nlp = None
    if ner:
        spacy = _import_spacy()
        model_path = spacy_model_path()
        exclude = [c for c in UNUSED_COMPONENTS if c != "lemmatizer"]
        with _without_entry_points(spacy):
            nlp = spacy.load(model_path, exclude=exclude, config=_tokenizer_config(model_path))
        lexicon = EnglishLexicon(nlp.get_pipe("lemmatizer").lookups)
        nlp.remove_pipe("lemmatizer")
        versions["spacy"] = spacy.__version__
        versions[SPACY_MODEL_PACKAGE] = model_path.name.rsplit("-", 1)[-1]
    return TextModel(nlp, versions, plugins=plugins, lexicon=lexicon)


def _import_spacy():
    """``import spacy``, without importing spaCy's command line first.

    ``spacy/__init__`` imports ``spacy.cli.info`` only to export ``spacy.info``, and
    ``spacy.cli`` imports every command with typer, weasel, requests, httpx, jinja2 and
    rich: about 0.3 CPU-seconds of a step worker's start-up, for a process that never
    runs a spaCy command. While spaCy is first imported, ``spacy.cli.info`` is a
    stand-in whose ``info`` imports and calls the real one; the stand-ins leave
    ``sys.modules`` right after, so ``spacy.info()`` and any later ``import spacy.cli``
    get spaCy's own. If spaCy's import needs more of ``spacy.cli`` than that, it is
    imported again the ordinary way. Called under ``_MODELS_LOCK``."""
    import sys
    import types

    if "spacy" in sys.modules:
        import spacy

        return spacy

    def info(*args, **kwargs):
        from spacy.cli.info import info as spacy_info

        return spacy_info(*args, **kwargs)

    cli = types.ModuleType("spacy.cli")
    cli.__path__ = []  # a package with no submodules but the one below
    cli_info = types.ModuleType("spacy.cli.info")
    cli_info.info = info
    sys.modules["spacy.cli"], sys.modules["spacy.cli.info"] = cli, cli_info
    try:
        import spacy
    except ImportError:
        spacy = None
    finally:
        for name, stub in (("spacy.cli.info", cli_info), ("spacy.cli", cli)):
            if sys.modules.get(name) is stub:
                del sys.modules[name]
        package = sys.modules.get("spacy")
        if package is not None and getattr(package, "cli", None) is cli:
            del package.cli
    if spacy is None:  # another spaCy: import it as it is
        sys.modules.pop("spacy", None)
        import spacy
    return spacy


#: Builds an empty tokenizer for ``spacy.load`` to fill from the model's own files.
SERIALIZED_TOKENIZER = "veil.SerializedTokenizer.v1"


def _tokenizer_config(model_path: Path) -> dict:
    """``spacy.load``'s config overrides: the tokenizer starts empty when the model holds
    a serialized one. spaCy's ``Language()`` would first build English's default tokenizer
    (its affix patterns compiled, 2,694 special cases added) and ``from_disk`` then reset
    all of it and read the model's: 0.1-0.2 CPU-seconds of every step worker's start-up
    spent on a tokenizer nobody uses. ``Tokenizer.from_bytes`` resets every setting before
    reading the file, so the result is the packaged model's tokenizer either way
    (tests/transforms/test_text.py compares the bytes). A model without a tokenizer
    file keeps spaCy's default."""
    if not (model_path / "tokenizer").is_file():
        return {}
    from spacy import util
    from spacy.tokenizer import Tokenizer

    def create():
        return lambda nlp: Tokenizer(nlp.vocab)

    if SERIALIZED_TOKENIZER not in util.registry.tokenizers:
        util.registry.tokenizers.register(SERIALIZED_TOKENIZER, func=create)
    return {"nlp": {"tokenizer": {"@tokenizers": SERIALIZED_TOKENIZER}}}


@contextlib.contextmanager
def _without_entry_points(spacy):
    """spaCy's registries look their names up in the installed packages' entry points
    too: ``Language()`` imports every package that offers a pipeline component through
    ``spacy_factories`` whether the pipeline uses it or not (Presidio offers one, a
    Hugging Face token pipe: all of ``presidio_analyzer`` and its hundreds of patterns,
    about 0.6 CPU-seconds), and every other lookup scans all entry points again (about
    75 scans per load). The packaged model names spaCy's own functions only
    (``spacy.*`` in its config.cfg), so entry points are left alone while it loads: a
    pipeline that did name an entry-point function would fail to load (its step fails
    closed), never run without it. Called under ``_MODELS_LOCK``."""
    util = spacy.util
    registries = [getattr(util.registry, name) for name in util.registry.get_registry_names()]
    registries.append(getattr(util.registry, "_entry_point_factories", None))
    switched = [r for r in registries if getattr(r, "entry_points", False) is True]
    for registry in switched:
        registry.entry_points = False
    try:
        yield
    finally:
        for registry in switched:
            registry.entry_points = True


def _ner_spans(model: TextModel, sentences: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """NER entities ``(start, end, label)`` for the given ``(offset, sentence)`` pairs.

    Windows not in the cache are joined (two newlines apart) into documents of about
    ``NER_BATCH_CHARS`` and parsed in one ``nlp.pipe`` call per record, not one parse
    per sentence.
    """
    cache = model.ner_cache
    out, todo = [], []
    for offset, sentence in sentences:
        hit = cache.get(sentence)
        if hit is None:
            todo.append((offset, sentence))
        else:
            try:  # the model (and this cache) is shared by threads and steps
                cache.move_to_end(sentence)
            except KeyError:  # evicted meanwhile by another thread
                pass
            out.extend((offset + s, offset + e, label) for s, e, label in hit)
    if not todo:
        return out
    batches: list[list[tuple[int, int, str]]] = []  # (offset, position in doc, sentence)
    size = NER_BATCH_CHARS + 1
    for offset, sentence in todo:
        if size > NER_BATCH_CHARS:
            batches.append([])
            size = 0
        batches[-1].append((offset, size, sentence))
        size += len(sentence) + 2
    texts = ["\n\n".join(sentence for _, _, sentence in batch) for batch in batches]
    docs = [model.nlp(texts[0])] if len(texts) == 1 else model.nlp.pipe(texts, batch_size=8)
    for batch, doc in zip(batches, docs):
        ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        for offset, position, sentence in batch:
            limit = position + len(sentence)
            mine = tuple(
                (s - position, e - position, label)
                for s, e, label in ents
                if position <= s and e <= limit
            )
            cache[sentence] = mine
            if len(cache) > NER_CACHE_SIZE:
                try:  # shared by threads: another may have emptied it meanwhile
                    cache.popitem(last=False)
                except KeyError:
                    pass
            out.extend((offset + s, offset + e, label) for s, e, label in mine)
    return out


def _windows(text: str, candidates) -> list[tuple[int, str]]:
    """The text NER needs around each candidate: from it to ``NER_WINDOW_WORDS`` words
    on, within its sentence. en_core_web_sm's NER sees about four tokens either side
    (a depth-4 CNN of window 1), so the rest of a long sentence does not change its
    answer, only its cost."""
    windows: list[list[int]] = []
    for c in candidates:
        sentence_end = _SENTENCE_END.search(text, c.end)
        limit = sentence_end.end() if sentence_end else len(text)
        end = c.end
        for _ in range(NER_WINDOW_WORDS):
            word = _NEXT_WORD.match(text, end)
            if not word or word.end() > limit:
                break
            end = word.end()
        if windows and c.start <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([c.start, end])
    return [(start, text[start:end]) for start, end in windows]


def name_findings(model: TextModel, text: str) -> list[Finding]:
    """Person names (and NER places and groups) from capitalized runs, cues and NER."""
    candidates = name_candidates(text)
    if not candidates:
        return []
    out = []
    # NER decides only single uncued words ("Tunde called", "ask Kafka"): a cued run is
    # a name, an uncued multi-word run is kept as a name anyway (fail closed).
    ambiguous = [c for c in candidates if not c.cued and c.words == 1 and c.sentence_initial]
    if model.lexicon is not None:
        # A word that is no English word is kept as a name below without asking NER:
        # NER only decides between a name and a common word ("Brown", "Will").
        ambiguous = [c for c in ambiguous if _english(model.lexicon, text[c.start : c.end])]
    ner = []
    unparsed: list = []
    if ambiguous and model.nlp is not None:
        windows = _windows(text, ambiguous)
        budget, kept = NER_MAX_CHARS, []
        for window in windows:
            budget -= len(window[1])
            if budget < 0:
                break
            kept.append(window)
        if len(kept) < len(windows):
            limit = windows[len(kept)][0]
            unparsed = [c for c in ambiguous if c.start >= limit]
            _LOGGER.info("NER budget reached: %d ambiguous words kept as names", len(unparsed))
        ner = _ner_spans(model, kept)
    for c in unparsed:
        out.append(Finding("PERSON", 0.3, c.start, c.end, "names:ner-budget"))
    for start, end, label in ner:
        if label in _NER_TYPES:
            entity, score = _NER_TYPES[label]
            out.append(Finding(entity, score, start, end, f"ner:{label}"))
    subjects = []
    for c in candidates:
        if c.cued:
            out.append(Finding("PERSON", 0.85, c.start, c.end, "names:cue"))
            if c.title:  # "Mr", "Dr." with the name: part of how it is written
                out.append(Finding("PERSON", 0.85, *c.title, "names:title"))
            continue
        labels = {label for s, e, label in ner if s < c.end and c.start < e}
        typed = labels & {"PERSON", "GPE", "LOC", "FAC", "NORP"}
        if not typed and c.words == 1 and c.sentence_initial and model.lexicon is not None:
            # Not an English word, or a double-barrelled one ("Hodgson-James"): a name.
            if not _english(model.lexicon, text[c.start : c.end]):
                out.append(Finding("PERSON", 0.35, c.start, c.end, "names:unknown-word"))
                continue
        if "PERSON" in labels:
            # NER found a name in the run: the whole run is the name ("Tunde Hansen").
            out.append(Finding("PERSON", 0.85, c.start, c.end, "names:ner"))
        elif c.words >= 2:
            # Fail closed: a multi-word capitalized run stays a low-score name unless
            # it names an organisation; NER places win by score when they type it.
            if not _ORG_WORDS.intersection(text[c.start : c.end].lower().split()):
                out.append(Finding("PERSON", 0.4, c.start, c.end, "names:run"))
        elif not c.sentence_initial:
            # A capitalized word inside a sentence: a name (or, after a locative
            # preposition, a place) unless known otherwise.
            near = _LOCATIVE.search(text, max(0, c.start - 12), c.start)
            entity = "LOCATION" if near else "PERSON"
            out.append(Finding(entity, 0.3, c.start, c.end, "names:word"))
        elif not typed:
            subjects.append(c)
    for c in subjects:  # after the loop: "Sunder and <a name found later>"
        if _subject_name(text, c, out):
            out.append(Finding("PERSON", 0.4, c.start, c.end, "names:subject"))
    return out


#: A verb in the past tense right after a word: regular (``-ed``) or a common irregular one.
_PAST_VERB = re.compile(
    r"[ \t]+(?:[a-z]{2,}ed|flew|began|spent|went|came|ran|wrote|told|took|gave|made|met|"
    r"left|saw|found|knew|thought|became|brought|bought|sent|said|got|had|was|won|lost|"
    r"felt|kept|led|paid|put|read|sat|sang|spoke|stood|taught|tried|drove|grew|held|"
    r"heard|built|fell|fought|drew|rode|rang|rose|shot|slept|sold|swam|threw|woke|wore)\b"
)
_AND_NAME = re.compile(r"[ \t]+(?:and|&)[ \t]+(?=[" + UPPER + r"])")


def _subject_name(text: str, c, found: list[Finding]) -> bool:
    """A singular capitalised word starting a sentence, with no article, as the subject
    of a past-tense verb (``Barman flew to ...``) or joined by ``and`` to a name found
    (``Sunder and <name> were ...``): a person, even when it is also an English word
    (a common noun there would need an article). Plurals (``Sales dropped``) are not."""
    word = text[c.start : c.end]
    if word.endswith("s") or len(word) < 3 or not word[1:].islower():
        return False
    if _PAST_VERB.match(text, c.end):
        return True
    joined = _AND_NAME.match(text, c.end)
    if joined:
        return any(
            f.entity_type == "PERSON" and f.start == joined.end() and f.score >= 0.35 for f in found
        )
    return False


def _english(lexicon, word: str) -> bool:
    parts = [p for p in re.split(r"[-'’]", word) if p]
    if len(parts) > 1 and all(p[:1].isupper() for p in parts):
        return False  # "Hodgson-James"
    return any(p in lexicon for p in parts)


_NUMBER_BEFORE = re.compile(
    r"(?m)(?:^|(?<=[>,:])|(?<=\bat)|(?<=\bin)|(?<=\bon)|(?<=\bto))[ \t]*"
    r"(\d{1,5}[A-Za-z]?(?:[/\-]\d{1,5}[A-Za-z]?)?),?[ \t]{1,3}$"
)
_NUMBER_LINE_BEFORE = re.compile(
    r"(?:^|(?<=\n)|(?<=\bat)|(?<=\bin))[ \t]*"
    r"(\d{1,5}[A-Za-z]?(?:[/\-]\d{1,5}[A-Za-z]?)?),?[ \t]*\n$"
)
_NUMBER_AFTER = re.compile(
    r"[ \t]{1,3}(\d{1,5}[A-Za-z]?(?:[/\-]\d{1,5}[A-Za-z]?)?)\.?(?=[ \t]*(?:$|[\n,;]|\\n|\.\s))"
)
_STREET_LIKE = frozenset({"STREET_ADDRESS", "PERSON", "LOCATION"})


def _house_numbers(text: str, findings: list[Finding]) -> list[Finding]:
    """House numbers left beside a street (or a street NER read as a name or place):
    ``57 <street>`` at the start of a line or after a comma, ``<street> 924,``."""
    out = []
    for f in findings:
        if f.entity_type not in _STREET_LIKE or f.score < 0.3:
            continue
        line_start = text.rfind("\n", 0, f.start) + 1
        before = _NUMBER_BEFORE.search(text, max(line_start, f.start - 16), f.start)
        if before is None and not text[line_start : f.start].strip() and f.score >= 0.35:
            # "located at 86/666\n<street>": the number ends the line before the street.
            before = _NUMBER_LINE_BEFORE.search(text, max(0, line_start - 24), line_start)
            if before and re.fullmatch(r"(?:19|20)\d\d", before.group(1)):
                before = None  # "in 2019\n..." is a year
        if before:
            s, e = before.span(1)
            out.append(Finding("STREET_ADDRESS", 0.5, s, e, "address:house-number"))
        after = _NUMBER_AFTER.match(text, f.end)
        if after and f.score >= 0.35 and not re.fullmatch(r"(?:19|20)\d\d", after.group(1)):
            # "Parmova 106, ..." / "Słowackiego 924\n": a street (read as a name or a
            # place) and its house number ending the address line or part.
            s, e = after.span(1)
            out.append(Finding("STREET_ADDRESS", 0.5, s, e, "address:house-number"))
    return out


#: Capitalised words that begin place names ("South Owenburgh", "Lake Anna", "Port Louis").
_PLACE_PREFIX = re.compile(
    r"(?<![\w\-])(?:North|South|East|West|North-?[Ee]ast|North-?[Ww]est|South-?[Ee]ast|"
    r"South-?[Ww]est|New|Lake|Port|Mount|Fort)[ \t]$"
)
_PLACE_LIKE = frozenset({"LOCATION", "PERSON", "STREET_ADDRESS"})


def _place_prefixes(text: str, findings: list[Finding]) -> list[Finding]:
    """A place (or a name NER read in its place) absorbs the compass word, ``New``,
    ``Lake`` or ``Port`` right before it: the town's name includes it."""
    out = []
    for f in findings:
        if f.entity_type not in _PLACE_LIKE:
            continue
        prefix = _PLACE_PREFIX.search(text, max(0, f.start - 12), f.start)
        if prefix:
            out.append(f._replace(start=prefix.start(), detector="address:place-prefix"))
    return out


def _deny_findings(text: str, deny_list: tuple) -> list[Finding]:
    out = []
    for entity, values in deny_list:
        for value in values:
            for match in re.finditer(r"(?<!\w)" + re.escape(value) + r"(?!\w)", text, re.I):
                out.append(Finding(entity, 1.0, match.start(), match.end(), "deny_list"))
    return out


def detect(model: TextModel, text: str, policy: TextPolicy | None = None) -> list[Finding]:
    """Every PII finding in ``text``: the one entry point other modalities call.

    Detection runs on a normalised copy (``veil.transforms.text.normalize``: NFKC,
    invisible characters removed, dashes and spaces unified, HTML/URL encodings decoded,
    look-alike letters folded); the spans returned are those of the original ``text``.

    Args:
        model: from ``load_text_model`` (or ``TextHandler.load``), loaded once.
        text: the string to scan (an OCR line, a transcript, a JSON string value...).
        policy: the policy's text section: entity filter, allow-, deny-list, context
            words, phone regions (None: everything, no lists, default regions).

    Returns:
        ``Finding(entity_type, score, start, end, detector)`` in text order, unmerged
        and unfiltered by score (see ``select_spans``).
    """
    norm = normalize(text)
    clean = norm.text
    context = dict(policy.context_words) if policy else None
    regions = policy.phone_regions if policy and policy.phone_regions else DEFAULT_PHONE_REGIONS
    findings = pattern_findings(clean, context, regions)
    findings += lexicon_findings(clean)
    findings += name_findings(model, clean)
    findings += cue_name_findings(clean)
    for plugin in model.plugins:
        findings += plugin.findings(clean)
    findings += _place_prefixes(clean, findings)
    findings += _house_numbers(clean, findings)
    if policy is not None:
        findings += _deny_findings(clean, policy.deny_list)
        if policy.allow_list:
            findings = [
                f for f in findings if clean[f.start : f.end].casefold() not in policy.allow_list
            ]
        if policy.entities:
            wanted = set(policy.entities)
            findings = [f for f in findings if f.entity_type in wanted]
    if not norm.identity:
        mapped = []
        for f in findings:
            start, end = norm.span(f.start, f.end)
            mapped.append(f._replace(start=start, end=end))
        findings = mapped
    return sorted(findings, key=lambda f: (f.start, -f.end))


def select_spans(findings, threshold: float) -> list[tuple[int, int, str]]:
    """Findings at or above ``threshold``, merged into non-overlapping labelled spans."""
    kept = [(f.start, f.end, f.entity_type, f.score) for f in findings if f.score >= threshold]
    return merge_spans(kept)


def merge_spans(findings) -> list[tuple[int, int, str]]:
    """Merges overlapping ``(start, end, type, score)`` findings into labelled spans.

    A merged span covers the union of its members and takes the type of the
    highest-scoring one (ties: the longer, then the alphabetically first type).
    """
    ordered = sorted(findings, key=lambda f: (f[0], -f[1]))
    merged: list[list] = []
    for start, end, entity_type, score in ordered:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], end)
            best = (score, end - start, _neg(entity_type))
            if best > last[3]:
                last[2], last[3] = entity_type, best
        else:
            merged.append([start, end, entity_type, (score, end - start, _neg(entity_type))])
    return [(s, e, t) for s, e, t, _ in merged]


def _neg(text: str) -> tuple:
    return tuple(-ord(c) for c in text) + (0,)  # the 0 ranks "A" above "AB"


def redact(text: str, spans: list[tuple[int, int, str]]) -> str:
    """Replaces each span by ``<ENTITY_TYPE>`` (the ``replace`` operator everywhere)."""
    out, cursor = [], 0
    for start, end, entity_type in spans:
        out.append(text[cursor:start])
        out.append(f"<{entity_type}>")
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def anonymize_spans(
    text: str,
    spans: list[tuple[int, int, str]],
    policy: Policy,
    modality: str,
    regimes,
    ctx: OperatorContext,
    field_path: str = "payload",
) -> str:
    """Applies the policy's operator to each span; ``drop`` removes the span."""
    out, cursor = [], 0
    for start, end, entity_type in spans:
        out.append(text[cursor:start])
        spec = policy.operator_for(modality, entity_type, regimes)
        value = apply_operator(
            spec, text[start:end], entity_type, ctx, f"{field_path}[{start}:{end}]"
        )
        if value is not DROP:
            out.append(value)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


__all__ = [
    "Finding",
    "TextHandler",
    "TextModel",
    "anonymize_spans",
    "detect",
    "load_text_model",
    "merge_spans",
    "redact",
    "select_spans",
    "spacy_model_path",
]
