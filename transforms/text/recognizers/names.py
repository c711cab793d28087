"""Person names: capitalised runs, titles, cue words, speaker labels, lower-case cues.

* Runs of capitalised words (any Latin, Greek or Cyrillic letters: ``Łukasz Żółć``,
  ``Zoë``), typed by the titles (``Dr.``, ``Mrs.``, ``Herr``, ``Mme``, ``pani``) and cue
  words (``my name is``, ``Dear``, ``Hallo``, ``Estimado``, ``patient``, ``regards``) before
  them. Runs without a cue are left to NER and, when NER does not type them, multi-word
  runs are kept as a low-score ``PERSON`` (fail closed).
* Lower case (``patient tola chachaj``, ``hi anna``): after a title or a strong cue, the
  next one to three words that are not common words are a name.
* Speaker labels: a short capitalised word or two at the start of a line followed by a
  colon (``Magdalena: hey``), unless it is a field label (``Subject:``, ``Note:``).
* Signature lines: the line after ``Regards,`` / ``Mit freundlichen Grüßen`` / ``--``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from veil.transforms.text.recognizers.base import LOWER, UPPER, Finding

TITLES = frozenset(
    "mr mrs ms miss mx dr prof professor sir madam dame lord lady rev reverend fr father "
    "sister brother capt captain sgt sergeant lt lieutenant col colonel gen general "
    "officer det detective judge nurse herr frau hr fr mme mlle mlle. m monsieur madame "
    "sr sra srta señor señora señorita don doña sig sig.ra signor signora signore dott "
    "dott.ssa dr.ssa pan pani panna dhr mevr mw heer mevrouw hr. fru fröken herra rouva "
    "neiti ing mgr doc mudr judr phdr sen senhor senhora dona".split()
)
#: Words after which a capitalized run is a person's name.
PERSON_CUES = (
    "name is", "name's", "named", "i am", "i'm", "this is", "dear", "hi", "hello", "hey",
    "thanks", "thank you", "regards", "sincerely", "cheers", "signed", "patient",
    "client", "customer", "employee", "tenant", "applicant", "contact", "call", "ask",
    "ask for", "attn", "attention", "from", "with", "by", "cc", "to", "spoke to",
    "spoke with", "met", "visited", "husband", "wife", "son", "daughter", "mother",
    "father", "brother", "sister", "partner", "colleague", "manager", "friend", "mr",
    "mrs", "ms", "dr", "and", "holder", "owner", "name:", "name", "user", "author",
    "reviewer", "assignee", "reporter", "agent", "physician", "doctor", "nurse", "meet",
    "meeting with", "invite", "email", "tell", "remind", "forward to", "ping",
    # Other European languages: greetings, sign-offs, "my name is", relatives, roles.
    "hallo", "liebe", "lieber", "sehr geehrte", "sehr geehrter", "grüße", "gruß",
    "mein name ist", "ich bin", "ich heiße", "bonjour", "salut", "cher", "chère",
    "je m'appelle", "je suis", "cordialement", "hola", "estimado", "estimada", "querido",
    "querida", "me llamo", "soy", "saludos", "atentamente", "ciao", "caro", "cara",
    "gentile", "mi chiamo", "sono", "cordiali saluti", "saluti", "olá", "ola", "prezado",
    "prezada", "chamo-me", "meu nome é", "atenciosamente", "beste", "geachte", "hoi",
    "ik ben", "mijn naam is", "groeten", "met vriendelijke groet", "hej", "hei", "hejsan",
    "jag heter", "jeg hedder", "jeg heter", "hälsningar", "vänliga hälsningar", "mvh",
    "dzień dobry", "witam", "cześć", "nazywam się", "pozdrawiam", "ahoj", "dobrý den",
    "jmenuji se", "s pozdravem", "szia", "üdvözlettel", "terveisin", "moi",
    "pacjent", "pacjentka", "patientin", "paciente", "paziente", "patiënt", "pacient",
    "pacientka", "kunde", "kundin", "client", "cliente", "klient", "klientka",
)  # fmt: skip
_PERSON_CUE_RE = re.compile(
    r"(?:^|[^\w'])(?:"
    + "|".join(re.escape(c) for c in sorted(PERSON_CUES, key=len, reverse=True))
    + r")[\s,:?]*$",
    re.IGNORECASE,
)
#: Cues strong enough to take the next words as a name even in lower case.
_LOWER_CUE = re.compile(
    r"(?:^|(?<=[^\w']))(?i:my name is|name is|name's|named|i am called|call me|"
    r"patient|pt\.?|patientin|paciente|paziente|pacjent(?:ka)?|pacient(?:ka)?|"
    r"dear|hi|hello|hey|hallo|hola|ciao|bonjour|hej|hei|ahoj|cześć|"
    r"mr|mrs|ms|miss|dr|prof|herr|frau|mme|mlle|sr|sra|pan|pani|signora|signor|"
    r"mein name ist|je m'appelle|me llamo|mi chiamo|mijn naam is|jag heter|nazywam się|"
    r"jmenuji se|meu nome é|ich heiße|name:|patient name:|signed|regards,?|thanks,?|cheers,?)"
    r"\.?[ \t]{1,3}(?P<v>[" + LOWER + r"][" + LOWER + r"'\-]{1,30}(?:[ \t](?:(?:van|von|de|da|"
    r"di|del|der|den|le|la)[ \t])?[" + LOWER + r"][" + LOWER + r"'\-]{1,30}){0,2})"
)
#: Capitalized words that are not names at the start of a sentence or anywhere.
STOP_CAPITALIZED = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just let me more most my myself no nor not now of off
    on once only or other our ours ourselves out over own same she should so some such
    than that the their theirs them themselves then there these they this those through
    to too under until up very was we were what when where which while who whom why will
    with would you your yours yourself yourselves yes ok okay please thanks thank hello hi
    hey dear regards best sincerely cheers note notes update updates today tomorrow
    yesterday tonight monday tuesday wednesday thursday friday saturday sunday january
    february march april may june july august september october november december jan feb
    mar apr jun jul aug sep sept oct nov dec q1 q2 q3 q4 our per re fw fwd subject
    attached attachment see call send sent check make take give get got keep let lets
    new old next last first second third final one two three four five six seven eight
    nine ten every many much several most however therefore meanwhile also although
    though unless since until whether after before during please kindly could would
    should might must shall may can will customer client patient user team staff manager
    support service services sales account accounts billing invoice order orders payment
    payments refund report reports review meeting meetings project projects product
    products release version build deploy deployment server database cluster system
    systems data file files document documents page pages section chapter table figure
    item items issue issues ticket tickets request requests error errors warning status
    summary overview background purpose scope goal goals action actions agenda minutes
    office department company committee board group division unit north south east west
    street avenue road city county state country national international global local
    general public private internal external annual quarterly monthly weekly daily
    morning afternoon evening night week month year quarter day hour minute time date
    no yes none total amount price cost budget revenue profit loss tax fee fees rate
    discount offer plan plans policy policies terms conditions agreement contract
    welcome congratulations sorry unfortunately fortunately great good thanks thank
    reminder important urgent fyi asap eta faq api ui ux id ip url pdf csv json sql
    ask tell contact email forward meet invite remind help cc bcc attn spoke met
    visa mastercard amex discover paypal venmo zelle iban swift ach
    tel fax mob nr str ca approx dept ref tel.
    """.split()
    # Common words of the other main European languages (articles, pronouns,
    # greetings, sign-offs, weekdays): never a name on their own.
    + """
    der die das den dem des ein eine einer einem einen und oder aber ich du er sie es wir
    ihr sehr geehrte geehrter liebe lieber hallo guten tag morgen abend danke bitte mit
    freundlichen grüßen gruß viele herzliche montag dienstag mittwoch donnerstag freitag
    samstag sonntag betreff anbei bei für von vom zum zur im ist sind war wurde haben
    le la les un une des du de et ou mais je tu il elle nous vous ils elles bonjour
    bonsoir merci cordialement madame monsieur cher chère lundi mardi mercredi jeudi
    vendredi samedi dimanche objet pour avec dans sur est sont
    el los las unos unas y o pero yo tú él ella nosotros ustedes hola buenos buenas días
    gracias saludos atentamente estimado estimada querido querida lunes martes miércoles
    jueves viernes sábado domingo asunto con para por en es son
    il lo gli uno una e ma io tu lui lei noi voi loro ciao buongiorno buonasera grazie
    cordiali saluti gentile caro cara lunedì martedì mercoledì giovedì venerdì sabato
    domenica oggetto per con nel sono
    het een en maar ik jij hij zij wij jullie hallo goedemorgen goedemiddag bedankt
    groeten beste geachte maandag dinsdag woensdag donderdag vrijdag zaterdag zondag
    onderwerp voor met van
    och eller men jag du han hon vi ni de hej tack hälsningar vänliga måndag tisdag
    onsdag torsdag fredag lördag söndag ämne för med
    os as um uma mas eu ele ela nós vocês olá bom boa obrigado obrigada atenciosamente
    prezado prezada segunda terça quarta quinta sexta sábado domingo assunto
    i oraz ale ja ty on ona my wy oni dzień dobry dziękuję pozdrawiam szanowny szanowna
    poniedziałek wtorek środa czwartek piątek sobota niedziela temat dla
    a nebo ale já ty on ona my vy oni dobrý den děkuji pozdravem vážený vážená pondělí
    úterý středa čtvrtek pátek sobota neděle předmět pro
    """.split()
)
#: Words that are never a lower-case name after a cue ("hi there", "patient was").
_NOT_LOWER_NAME = STOP_CAPITALIZED | frozenset(
    """
    there everyone all team guys folks again back is was has had will would should
    presented presents reported reports denies denied states stated complains admitted
    discharged seen reviewed returned arrived called came went needs needed requires
    required says said with without who whose whom which that this is's agreed refused
    declined tolerated received remains remained continues continued appears appeared
    feels felt tells told doing done well fine here now just any some his her their
    support sir madam mam there's all, everybody anyone someone world friends
    und der die das ist war hat wird mit ohne le la les est a et avec sans el los las es
    fue con sin il lo gli è ha con senza de het is was met zonder och är var med utan
    i jest był była z bez a je byl byla s bez
    """.split()
)
#: Field labels that are not speaker names at the start of a line.
_FIELD_LABELS = frozenset(
    """
    subject from to cc bcc date time re fw fwd note notes error warning info debug trace
    fatal critical status result results reason summary description details detail name
    address phone email e-mail tel mobile fax dob age sex gender id ref reference order
    invoice amount total price case ticket priority type category question answer q a
    diagnosis plan assessment history medications allergies complaint impression
    findings recommendation recommendations comments comment remarks action outcome
    agent customer user system bot assistant operator support admin root host server
    url link source target input output request response message body title location
    department company organization position role employer occupation nationality
    step steps example examples tip tips warning caution important update ps p.s
    betreff datum von an objet sujet de asunto fecha para oggetto da oggetto onderwerp
    van ämne från till temat od do předmět
    """.split()
)
_CALENDAR_WORDS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march "
    "april june july august september october november december today tomorrow".split()
)
_NAME_WORD = (
    r"(?:["
    + UPPER
    + r"]\.|["
    + UPPER
    + r"]["
    + LOWER
    + r"]*(?:["
    + UPPER
    + r"]["
    + LOWER
    + r"]+)?(?:['’\-]["
    + UPPER
    + LOWER
    + r"]+)*)"
)
_PARTICLE = r"(?:van|von|der|den|de|da|das|dos|del|della|di|du|le|la|bin|ibn|al|el|ter|ten|st\.)"
_NAME_RUN = re.compile(
    r"(?<![\w@.\-/])"
    + _NAME_WORD
    + r"(?:[ \t]{1,3}(?:"
    + _PARTICLE
    + r"[ \t]{1,3}){0,2}"
    + _NAME_WORD
    + r"){0,3}(?![\w@\-/])"
)
_SENTENCE_END = re.compile(r"(?:[.!?:;\"(\[\n\r\t•*>\-]|^)\s*$")
#: "van der", "de", "da" right before a name belong to it ("van der Ven").
_PARTICLES_BEFORE = re.compile(r"(?:^|(?<=\s))(?:" + _PARTICLE + r"[ \t]{1,3}){1,2}$")
_SPEAKER = re.compile(
    r"(?m)^[ \t]*(?:[-*>•][ \t]*)?(?P<v>[" + UPPER + r"][" + LOWER + r"'\-]{1,30}"
    r"(?:[ \t][" + UPPER + r"][" + LOWER + r"'\-]{0,30}\.?)?)[ \t]{0,2}:[ \t]{0,3}(?=\S)"
)
_SIGN_OFF = re.compile(
    r"(?im)^[ \t]*(?:best|kind|warm)?\s{0,2}(?:regards|wishes|sincerely|cheers|thanks|"
    r"thank you|yours truly|yours|mit freundlichen grüßen|viele grüße|liebe grüße|grüße|"
    r"cordialement|bien à vous|saludos|atentamente|un saludo|cordiali saluti|saluti|"
    r"atenciosamente|abraços|met vriendelijke groet|groeten|med vänliga hälsningar|"
    r"vänliga hälsningar|mvh|hilsen|pozdrawiam|z poważaniem|s pozdravem|terveisin|"
    r"üdvözlettel|--)[ \t]*,?[ \t]*\r?\n[ \t]*(?P<v>[^\n]{2,60}?)[ \t]*$"
)


#: Cues after which the next capitalised words are a name even if they are common
#: words: naming phrases and salutations (titles are handled in ``name_candidates``).
_NAMING_CUE = re.compile(
    r"(?i)(?:^|[^\w'])(?:name(?:\s+is|'s|:)?|named|called|dear|i am|i'm|patient|"
    r"mein name ist|je m'appelle|me llamo|mi chiamo|mijn naam is|jag heter|nazywam się)"
    r"[\s,:]*$"
)
#: Function words that never start a name, even after a title or a naming cue.
_FUNCTION_WORDS = frozenset(
    "a an the and or but of in on at to for from by with as is was are were be this "
    "that these those it its he she they we you i my your his her our their not no".split()
)
_TITLE_WORD = re.compile(r"[\w.]+?(?=\.?[ \t])\.?")
#: Capitalised words that begin place names: compass points, "New", "Lake", "Port".
_PLACE_WORDS = frozenset("north south east west new lake port mount fort".split())
#: A title right before a name, with or without its full stop ("Mrs. ", "Dr ").
_TITLE_BEFORE = re.compile(
    r"(?<![\w.])(?i:"
    + "|".join(re.escape(t) for t in sorted(TITLES, key=len, reverse=True))
    + r")\.?[ \t]{1,3}$"
)


class NameCandidate(NamedTuple):
    start: int
    end: int
    cued: bool  # a title or cue word precedes it
    sentence_initial: bool
    words: int
    title: tuple[int, int] | None = None  # the title before it ("Mr", "Dr.")


def name_candidates(text: str) -> list[NameCandidate]:
    """Runs of capitalized words that may be names (stop words trimmed off)."""
    out = []
    for match in _NAME_RUN.finditer(text):
        start, end = match.span()
        words = [
            (m.start() + start, m.end() + start, m.group())
            for m in re.finditer(r"\S+", match.group())
        ]
        # Trim stop words and titles off the front; a title becomes the cue and is
        # redacted with the name ("Mr Marc Cox": the title is a span of its own). After a title or a naming
        # cue ("name is", "Dear"), a capitalised word is a name even when it is also a
        # common word ("Miss April Blankenship", "name Eta Chakraborty"): fail closed.
        cued = False
        title_start = None
        titled = bool(_TITLE_BEFORE.search(text, max(0, start - 16), start))
        strong = titled or bool(_NAMING_CUE.search(text, max(0, start - 24), start))
        while words:
            bare = words[0][2].rstrip(".").lower()
            # After a naming cue, common words stay only beside an uncommon one
            # ("Dear April Okafor", not "Dear Customer Support"); after a title, always.
            keep = (
                strong
                and bare not in _FUNCTION_WORDS
                and (titled or any(w[2].rstrip(".").lower() not in STOP_CAPITALIZED for w in words))
            )
            if bare in _PLACE_WORDS and len(words) > 1:
                break  # "North Kestrelton", "New Farlow": the start of a place's name
            if bare in TITLES:
                cued = strong = titled = True
                title_start = words[0][0] if title_start is None else title_start
                words.pop(0)
            elif bare in STOP_CAPITALIZED and not keep:
                strong = strong or bool(_NAMING_CUE.fullmatch(words[0][2]))  # "Dear"
                words.pop(0)
                title_start = None
            else:
                break
        while words and words[-1][2].rstrip(".").lower() in _CALENDAR_WORDS:
            words.pop()
        if not words:
            continue
        first_start = words[0][0]
        before = text[max(0, first_start - 40) : first_start]
        prev = text[max(0, first_start - 12) : first_start].rstrip().lower().rstrip(".")
        after_title = bool(prev.split()) and prev.split()[-1] in TITLES
        if after_title and title_start is None:
            # "Mrs. Sandra Mann": the title (ending the previous run) joins the name.
            title = _TITLE_BEFORE.search(text, max(0, first_start - 16), first_start)
            if title:
                title_start = title.start()
        cued = cued or after_title
        initial = bool(_SENTENCE_END.search(before)) and first_start == start and not after_title
        if not cued and _PERSON_CUE_RE.search(before):
            cued = True
        end = words[-1][1]
        if text[end - 1] == "." and not re.fullmatch(r"[A-Z]\.", words[-1][2]):
            end -= 1
        particles = _PARTICLES_BEFORE.search(text, max(0, first_start - 12), first_start)
        if particles:
            first_start = particles.start()
        title = None
        if title_start is not None:
            # Its own span, so that the name's pseudonym does not depend on the title.
            bare = _TITLE_WORD.match(text, title_start)
            title = (title_start, bare.end()) if bare else None
        out.append(NameCandidate(first_start, end, cued, initial, len(words), title))
    return out


def cue_name_findings(text: str) -> list[Finding]:
    """Names the capitalised-run detector cannot see: lower case after a strong cue,
    speaker labels at the start of chat lines, the line after a sign-off."""
    out = []
    for match in _LOWER_CUE.finditer(text):
        words = match.group("v").split()
        kept = []
        for word in words:
            if word.lower().strip("'-") in _NOT_LOWER_NAME:
                break
            kept.append(word)
        if kept:
            start = match.start("v")
            end = start + len(" ".join(kept)) if len(kept) == len(words) else None
            if end is None:
                end = start + match.group("v").index(kept[-1]) + len(kept[-1])
            out.append(Finding("PERSON", 0.6, start, end, "names:lower-cue"))
    for match in _SPEAKER.finditer(text):
        value = match.group("v")
        if value.split()[0].lower().rstrip(".") in _FIELD_LABELS | STOP_CAPITALIZED:
            continue
        out.append(Finding("PERSON", 0.6, match.start("v"), match.end("v"), "names:speaker"))
    for match in _SIGN_OFF.finditer(text):
        value = match.group("v")
        if any(c.isdigit() for c in value) or "@" in value or len(value.split()) > 4:
            continue
        out.append(Finding("PERSON", 0.5, match.start("v"), match.end("v"), "names:sign-off"))
    return out
