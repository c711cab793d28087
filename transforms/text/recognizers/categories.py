"""Special categories (GDPR art. 9) and NRP: one merged, case-insensitive lexicon pass.

Nationalities, religions, political groups, health conditions and sexual orientation
are words, not identifiers: they raise a record's classification (GDPR_SPECIAL_CATEGORY)
and are anonymized by the policy's operator like any other entity.
"""

from __future__ import annotations

import re

from veil.transforms.text.recognizers.base import Finding

LEXICONS = {
    "NRP": (
        "American|Mexican|Canadian|Brazilian|Argentinian|Colombian|Peruvian|Chilean|Cuban|"
        "Haitian|Jamaican|Dominican|Puerto Rican|Salvadoran|Guatemalan|British|English|Irish|"
        "Scottish|Welsh|French|German|Italian|Spanish|Portuguese|Dutch|Belgian|Swiss|Austrian|"
        "Swedish|Norwegian|Danish|Finnish|Polish|Czech|Hungarian|Romanian|Bulgarian|Greek|"
        "Turkish|Russian|Ukrainian|Serbian|Croatian|Albanian|Chinese|Japanese|Korean|"
        "Vietnamese|Thai|Filipino|Filipina|Indonesian|Malaysian|Indian|Pakistani|"
        "Bangladeshi|Sri Lankan|Nepali|Afghan|Iranian|Iraqi|Syrian|Lebanese|Israeli|"
        "Palestinian|Saudi|Egyptian|Moroccan|Algerian|Tunisian|Nigerian|Ghanaian|Kenyan|"
        "Ethiopian|Somali|Sudanese|South African|Australian|New Zealander|Hispanic|Latino|"
        "Latina|Latinx|African American|Asian American|Native American|Caucasian|"
        "Pacific Islander|Indigenous|Aboriginal|Roma|Kurdish|Arab"
    ),
    "RELIGION": (
        "Christian|Christianity|Catholic|Roman Catholic|Protestant|Baptist|Methodist|"
        "Lutheran|Presbyterian|Anglican|Evangelical|Pentecostal|Mormon|Jehovah's Witness|"
        "Orthodox Christian|Muslim|Islam|Islamic|Sunni|Shia|Jewish|Judaism|Hindu|Hinduism|"
        "Buddhist|Buddhism|Sikh|Sikhism|Jain|Taoist|Atheist|Agnostic|Quaker|Amish|"
        "synagogue|mosque|church|temple|Ramadan|Shabbat|kosher|halal"
    ),
    "POLITICAL_AFFILIATION": (
        "Democrat|Democrats|Democratic Party|Republican|Republicans|Republican Party|GOP|"
        "Libertarian|Green Party|Labour Party|Labour|Conservative Party|Tory|Tories|"
        "Liberal Democrats|Socialist|Communist|Communist Party|trade union|union member"
    ),
    "HEALTH": (
        "diabetes|diabetic|HIV|AIDS|cancer|tumou?r|leukemia|lymphoma|depression|depressive|"
        "anxiety disorder|bipolar|schizophrenia|PTSD|ADHD|autism|autistic|asthma|"
        "hypertension|heart disease|heart attack|stroke|epilepsy|seizures?|dementia|"
        "Alzheimer'?s|Parkinson'?s|multiple sclerosis|hepatitis [ABC]|hepatitis|"
        "tuberculosis|COVID-19|pneumonia|pregnant|pregnancy|miscarriage|abortion|"
        "chemotherapy|radiotherapy|dialysis|insulin|antidepressants?|opioid|methadone|"
        "rehab|addiction|alcoholism|eating disorder|anorexia|bulimia|obesity|"
        "disability|disabled|wheelchair|prescription|diagnosed with|diagnosis|"
        "blood pressure|cholesterol|allergy to|allergic to|surgery|fracture|"
        "therapy sessions|psychiatric|mental health|STD|STI|chlamydia|HPV|infertility|IVF"
    ),
    "SEXUAL_ORIENTATION": (
        "gay|lesbian|bisexual|transgender|homosexual|heterosexual|queer|LGBTQ\\+?|"
        "LGBT|non-binary|nonbinary|pansexual|asexual|same-sex partner|sex life"
    ),
}
_CASE_SENSITIVE_LEXICONS = ("NRP", "POLITICAL_AFFILIATION")


def _lexicon_regex(case_sensitive: bool) -> re.Pattern:
    parts = []
    for entity, words in LEXICONS.items():
        if (entity in _CASE_SENSITIVE_LEXICONS) == case_sensitive:
            parts.append(f"(?P<{entity}>{words})")
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile(r"(?<![\w\-])(?:" + "|".join(parts) + r")(?![\w\-])", flags)


_LEXICON_CS = _lexicon_regex(True)
_LEXICON_CI = _lexicon_regex(False)
LEXICON_SCORES = {
    "NRP": 0.6,
    "RELIGION": 0.6,
    "POLITICAL_AFFILIATION": 0.6,
    "HEALTH": 0.5,
    "SEXUAL_ORIENTATION": 0.6,
}


def lexicon_findings(text: str) -> list[Finding]:
    out = []
    for regex in (_LEXICON_CS, _LEXICON_CI):
        for match in regex.finditer(text):
            entity = match.lastgroup
            out.append(
                Finding(entity, LEXICON_SCORES[entity], match.start(), match.end(), "lexicon")
            )
    return out
