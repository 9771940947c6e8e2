"""The embedded demo corpus: a seeded synthetic language pair with real translation structure.

The source language (code ``xs``) is a small English fragment; the target (code ``xt``) is an
invented language with German/Romance traits, so that translating needs more than copying:

* word order: verb-second main clauses (a fronted adverb or clause inverts subject and verb),
  verb-final subordinate and relative clauses, a clause-final infinitive after the future
  auxiliary, yes/no questions verb-first, adjectives after the noun in mirror order, genitive
  phrases before their head, two postpositions;
* agreement: three noun genders (not visible in the source) and number decide determiner,
  adjective and relative-pronoun endings; determiners and pronouns also mark case
  (nominative / accusative / dative, genitive before a head); verbs agree with the subject in
  person and number in three tenses; manner adverbs are derived from adjectives;
* compounds: source noun-noun compounds ("the kitchen door") become one target word with a
  gender-dependent linking element, so the target vocabulary is open and BPE matters.

The language itself (lexicon, stems, genders) is fixed; ``--seed`` only chooses the sentences.
Same seed, same sizes -> byte-identical files. Text is raw: capitalised, punctuated, with some
English contractions, one sentence per line, ready for the Moses tokenizer (``en`` rules).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate
from pathlib import Path

from admin.common.atomic import atomic_path
from admin.common.cli import run_cli
from admin.common.errors import AdminError

SRC_LANG = "xs"  # ISO 639-1 leaves "xs"/"xt" unassigned: no clash with a real language
TGT_LANG = "xt"
SPLITS = ("train", "valid", "test")
DEFAULT_SIZES = {"train": 20000, "valid": 1000, "test": 1000}
_LEXICON_SEED = 20200410  # fixes the target language; never derived from --seed

# --------------------------------------------------------------------------- lexicon (source)

_PEOPLE = (
    "man/men woman/women child/children boy girl teacher farmer doctor student king queen "
    "soldier baker driver singer friend neighbour sister brother mother father guest judge "
    "nurse pilot writer painter hunter fisherman/fishermen merchant"
)
_ANIMALS = (
    "dog cat horse bird fish/fish mouse/mice wolf/wolves fox/foxes cow sheep/sheep goat "
    "rabbit bear duck lion snake frog bee"
)
_THINGS = (
    "book table chair door window key cup bottle letter apple cake stone tree flower box/boxes "
    "bag car boat ship ball knife/knives lamp clock coat hat shoe ring map picture song bell "
    "glass/glasses plate bed wall roof leaf/leaves egg coin rope"
)
_PLACES = (
    "house garden kitchen river forest city/cities village school market church/churches "
    "bridge street field mountain lake castle station harbour shop island"
)
# adjective:selection (a = animate nouns only, t = things/places only, * = any)
_ADJECTIVES = (
    "big:* small:* old:* young:a new:t red:* green:t blue:t black:* white:* yellow:t brown:* "
    "happy:a sad:a tired:a hungry:a quiet:* loud:* fast:* slow:* heavy:* warm:* cold:* clean:* "
    "dirty:* rich:a poor:a strong:* weak:* beautiful:* ugly:* dark:t bright:t empty:t full:t "
    "long:t short:* wet:* dry:* sharp:t kind:a clever:a brave:a strange:* famous:* careful:a "
    "quick:*"
)
# manner adverbs derive from these adjectives in both languages (quick -> quickly, stem + "ul")
_MANNER = (
    "quick:quickly slow:slowly quiet:quietly loud:loudly careful:carefully happy:happily "
    "sad:sadly brave:bravely kind:kindly clever:cleverly strange:strangely"
)
# verb:past:frame:subject:object  (frames: i intransitive, t transitive, d ditransitive,
# c clause complement; selection letters as for adjectives)
_VERBS = (
    "sleep:slept:i:a run:ran:i:a laugh:laughed:i:a sing:sang:i:a wait:waited:i:a "
    "work:worked:i:a swim:swam:i:a dance:danced:i:a cry:cried:i:a smile:smiled:i:a "
    "walk:walked:i:a arrive:arrived:i:a travel:travelled:i:a play:played:i:a rest:rested:i:a "
    "hide:hid:i:a fall:fell:i:* disappear:disappeared:i:* shine:shone:i:t move:moved:i:* "
    "see:saw:t:a:* find:found:t:a:* buy:bought:t:a:t sell:sold:t:a:t carry:carried:t:a:* "
    "paint:painted:t:a:* open:opened:t:a:t close:closed:t:a:t build:built:t:a:t "
    "break:broke:t:a:t take:took:t:a:* hold:held:t:a:* wash:washed:t:a:* clean:cleaned:t:a:t "
    "love:loved:t:a:* like:liked:t:a:* watch:watched:t:a:* hear:heard:t:a:* "
    "follow:followed:t:a:* visit:visited:t:a:* meet:met:t:a:a help:helped:t:a:a "
    "catch:caught:t:a:* push:pushed:t:a:* pull:pulled:t:a:* draw:drew:t:a:* lose:lost:t:a:* "
    "want:wanted:t:a:* need:needed:t:a:* remember:remembered:t:a:* forget:forgot:t:a:* "
    "give:gave:d:a:t show:showed:d:a:t send:sent:d:a:t bring:brought:d:a:t "
    "offer:offered:d:a:t lend:lent:d:a:t throw:threw:d:a:t "
    "say:said:c:a think:thought:c:a know:knew:c:a believe:believed:c:a hope:hoped:c:a "
    "dream:dreamed:c:a"
)
_NAMES = "Anna Peter Maria Paul Lena Tom Sara Max Julia Ben Clara Felix Nina Oscar Eva Leo"

# ------------------------------------------------------------- lexicon (target function words)

# determiner / relative-pronoun endings: [case][gender 0..2 or 3 = plural]
_CASE_END = {
    "nom": ("a", "o", "e", "i"),
    "acc": ("an", "on", "en", "in"),
    "dat": ("am", "om", "em", "im"),
    "gen": ("as", "os", "es", "is"),
}
_ADJ_END = ("a", "o", "e", "i")  # gender 0..2, plural
_PLURAL = ("en", "i", "s")  # noun plural suffix by gender
_LINKER = ("", "s", "en")  # compound linking element by the modifier's gender
_PERSON_END = ("o", "as", "at", "amo", "ant")  # 1sg 2sg 3sg 1pl 3pl
_COPULA = {
    "pres": ("som", "es", "est", "somo", "sunt"),
    "past": ("era", "eras", "erat", "eramo", "erant"),
}
_FUT_AUX, _PAST_INFIX, _INF, _COP_INF, _NEG, _COMP = "vol", "ev", "ir", "esir", "nek", "ke"


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    tgt: str
    gender: int
    animate: bool


@dataclass(frozen=True)
class Adj:
    en: str
    tgt: str
    sel: str


@dataclass(frozen=True)
class Verb:
    en: str
    en3: str
    past: str
    tgt: str
    frame: str
    subj: str
    obj: str


@dataclass(frozen=True)
class Word:
    """A function word or adverb: its source form(s) and target form."""

    en: str
    tgt: str
    tag: str = ""  # tense constraint for time adverbs, "post" for postpositions


@dataclass(frozen=True)
class Det:
    en_sg: str | None  # None: not used with singular nouns
    en_pl: str | None
    tgt: str  # prefix; the case/gender ending follows
    weight: float


@dataclass(frozen=True)
class Pron:
    nom: str
    acc: str
    slot: int  # index into the person endings
    gender: int
    tgt: tuple[str, str, str]  # nom, acc, dat


_DETS = (
    Det("the", "the", "d", 6.0),
    Det("a", None, "un", 3.0),
    Det("this", "these", "tis", 1.0),
    Det("that", "those", "tal", 0.7),
    Det("every", None, "kad", 0.5),
    Det("no", "no", "nul", 0.4),
    Det(None, "some", "kelk", 0.6),
    Det(None, "many", "mult", 0.5),
    Det(None, "", "", 1.0),  # bare plural: no determiner on either side
    Det("my", "my", "mej", 0.6),
    Det("your", "your", "tej", 0.5),
    Det("his", "his", "lej", 0.5),
    Det("her", "her", "laj", 0.5),
    Det("our", "our", "noj", 0.4),
    Det("their", "their", "loj", 0.4),
)
_PRONOUNS = (
    Pron("I", "me", 0, 0, ("jo", "me", "mi")),
    Pron("you", "you", 1, 0, ("tu", "te", "ti")),
    Pron("he", "him", 2, 0, ("lo", "lon", "lom")),
    Pron("she", "her", 2, 1, ("la", "lan", "lam")),
    Pron("it", "it", 2, 2, ("le", "len", "lem")),
    Pron("we", "us", 3, 0, ("nos", "nosen", "nosem")),
    Pron("they", "them", 4, 0, ("lor", "loren", "lorem")),
)
_NUMBERS = tuple(
    Word(en, tgt)
    for en, tgt in zip(
        "two three four five six seven eight nine ten".split(),
        "du tri kvar kin ses sep ok nov dek".split(),
        strict=True,
    )
)
_PREPS = (
    Word("in", "im"),
    Word("on", "sur"),
    Word("under", "sub"),
    Word("behind", "dop"),
    Word("near", "pres", "post"),
    Word("with", "kun"),
    Word("without", "sen", "post"),
    Word("from", "ab"),
    Word("beside", "lat"),
)
_CONJS = (
    Word("because", "kar"),
    Word("when", "kan"),
    Word("although", "malke"),
    Word("if", "si"),
    Word("before", "prim"),
    Word("after", "pos"),
    Word("while", "dum"),
    Word("until", "tik"),
)
_TIME = (
    Word("yesterday", "jeri", "past"),
    Word("today", "hodi", ""),
    Word("tomorrow", "doman", "fut"),
    Word("now", "nun", "pres"),
    Word("soon", "balde", "fut"),
    Word("recently", "pasanjar", "past"),
)
_FREQ = (
    Word("often", "spes"),
    Word("always", "semper"),
    Word("sometimes", "foj"),
    Word("rarely", "rar"),
    Word("never", "nunka"),
)
_FUNCTION_WORDS = frozenset(
    [w.tgt for group in (_NUMBERS, _PREPS, _CONJS, _TIME, _FREQ) for w in group]
    + [d.tgt + e for d in _DETS if d.tgt for ends in _CASE_END.values() for e in ends]
    + [f for p in _PRONOUNS for f in p.tgt]
    + [f for forms in _COPULA.values() for f in forms]
    + [_FUT_AUX + e for e in _PERSON_END]
    + [_NEG, _COMP, _COP_INF]
)


@dataclass(frozen=True)
class Lexicon:
    nouns: tuple[Noun, ...]
    adjs: tuple[Adj, ...]
    verbs: tuple[Verb, ...]
    manner: tuple[Word, ...]
    names: tuple[str, ...]


def _third_singular(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


class _StemMaker:
    """Invents distinct target stems from a fixed seed (the language never depends on --seed)."""

    _ONSETS = "b d f g k l m n p r s t v z br dr gr kr pl st tr sk".split()
    _VOWELS = "a e i o u a e o".split()
    _CODAS = "l m n r s t k".split()

    def __init__(self) -> None:
        self.rng = random.Random(_LEXICON_SEED)
        self.taken: set[str] = set(_FUNCTION_WORDS)

    def make(self, syllables: int, closed: bool) -> str:
        """A new stem; ``closed`` stems end in a consonant so vowel endings attach cleanly."""
        while True:
            parts = [
                self.rng.choice(self._ONSETS) + self.rng.choice(self._VOWELS)
                for _ in range(syllables)
            ]
            if closed or self.rng.random() < 0.4:
                parts.append(self.rng.choice(self._CODAS))
            stem = "".join(parts)
            if stem not in self.taken:
                self.taken.add(stem)
                return stem


@cache
def lexicon() -> Lexicon:
    """The fixed bilingual lexicon (cached: identical for every seed)."""
    stems = _StemMaker()
    nouns: list[Noun] = []
    for group, animate in ((_PEOPLE, True), (_ANIMALS, True), (_THINGS, False), (_PLACES, False)):
        for entry in group.split():
            sg, _, pl = entry.partition("/")
            tgt = stems.make(stems.rng.choice((1, 2, 2, 3)), closed=False)
            nouns.append(Noun(sg, pl or sg + "s", tgt, stems.rng.randrange(3), animate))
    adjs = []
    for entry in _ADJECTIVES.split():
        en, sel = entry.split(":")
        adjs.append(Adj(en, stems.make(stems.rng.choice((1, 2)), closed=True), sel))
    by_en = {a.en: a for a in adjs}
    manner = tuple(
        Word(adv, by_en[adj].tgt + "ul") for adj, adv in (e.split(":") for e in _MANNER.split())
    )
    verbs = []
    for entry in _VERBS.split():
        en, past, frame, subj, *obj = entry.split(":")
        tgt = stems.make(stems.rng.choice((1, 2)), closed=True)
        verbs.append(Verb(en, _third_singular(en), past, tgt, frame, subj, obj[0] if obj else ""))
    return Lexicon(tuple(nouns), tuple(adjs), tuple(verbs), manner, tuple(_NAMES.split()))


# ------------------------------------------------------------------------------------ syntax


@dataclass(eq=False)
class NP:
    """A noun phrase; exactly one of noun / pron / name is set."""

    noun: Noun | None = None
    pron: Pron | None = None
    name: str | None = None
    plural: bool = False
    det: Det | None = None
    number: Word | None = None
    modifier: Noun | None = None  # compound modifier: "kitchen" in "the kitchen door"
    adjs: list[Adj] = field(default_factory=list)
    gen: NP | None = None  # "of the house" in "the door of the house"
    rel: Clause | None = None

    @property
    def gender(self) -> int:
        if self.pron is not None:
            return self.pron.gender
        return self.noun.gender if self.noun is not None else 0

    @property
    def slot(self) -> int:
        """Index into the person endings (1sg 2sg 3sg 1pl 3pl)."""
        if self.pron is not None:
            return self.pron.slot
        return 4 if self.plural else 2

    @property
    def animate(self) -> bool:
        return self.noun.animate if self.noun is not None else True


@dataclass(eq=False)
class PP:
    prep: Word
    np: NP


@dataclass(eq=False)
class Clause:
    subj: NP
    verb: Verb | None  # None: the copula
    tense: str  # pres / past / fut
    neg: bool = False
    dobj: NP | None = None
    iobj: NP | None = None
    iobj_to: bool = False  # "gives a bone to the dog" instead of "gives the dog a bone"
    pred_adj: Adj | None = None
    pred_pp: PP | None = None
    pps: list[PP] = field(default_factory=list)
    time: Word | None = None
    time_front: bool = False
    freq: Word | None = None
    manner: Word | None = None
    comp: Clause | None = None  # "that"-clause of say/think/...
    comp_that: bool = True
    sub: Clause | None = None  # adverbial clause
    conj: Word | None = None
    sub_front: bool = False
    gap: str = ""  # relative clauses: "subj" or "obj" is the relativised NP
    contract: bool = False  # "doesn't" rather than "does not"


Tok = tuple[str, tuple[object, ...]]  # surface form, alignment keys (same key = aligned)


def _k(node: object, slot: str) -> tuple[object, ...]:
    return ((id(node), slot),)


# ---------------------------------------------------------------------------------- sampling


class _Sampler:
    """Draws random sentence trees; all randomness comes from one seeded ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lex = lexicon()
        # cumulative weights: same draws as ``weights=``, without re-summing on every call
        self.det_cum = list(accumulate(d.weight for d in _DETS))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def noun(self, sel: str) -> Noun:
        while True:
            noun = self.rng.choice(self.lex.nouns)
            if sel == "*" or (sel == "a") == noun.animate:
                return noun

    def adjective(self, noun: Noun, avoid: list[Adj]) -> Adj:
        while True:
            adj = self.rng.choice(self.lex.adjs)
            fits = adj.sel == "*" or (adj.sel == "a") == noun.animate
            if fits and adj not in avoid:
                return adj

    def np(self, sel: str, top: bool, allow_pron: bool = True) -> NP:
        """A noun phrase; ``top``: main-clause level, where relatives and genitives may attach."""
        roll = self.rng.random()
        if allow_pron and sel != "t" and roll < 0.2:
            pron = self.rng.choice(_PRONOUNS if sel == "a" else _PRONOUNS[2:5])
            return NP(pron=pron)
        if sel != "t" and roll < 0.28:
            return NP(name=self.rng.choice(self.lex.names))
        np = NP(noun=self.noun(sel), plural=self.chance(0.3))
        np.det = self.determiner(np.plural)
        if np.plural and np.det.en_pl in ("the", "", "these", "those", "my", "our", "their"):
            if self.chance(0.3):
                np.number = self.rng.choice(_NUMBERS)
        n_adj = self.rng.choices((0, 1, 2), cum_weights=(0.65, 0.95, 1.0))[0]
        for _ in range(n_adj):
            np.adjs.append(self.adjective(np.noun, np.adjs))
        if not np.noun.animate and self.chance(0.18):
            np.modifier = self.noun("t")
        if top and np.det.en_sg == "the" and not np.plural and self.chance(0.06):
            np.gen = self.np("*", top=False, allow_pron=False)
            if np.gen.det is not None and not np.gen.det.tgt:
                np.gen.det = _DETS[0]  # the genitive needs a determiner to carry its case
        elif top and self.chance(0.06):
            np.rel = self.relative(np)
        return np

    def determiner(self, plural: bool) -> Det:
        while True:
            det = self.rng.choices(_DETS, cum_weights=self.det_cum)[0]
            if (det.en_pl if plural else det.en_sg) is not None:
                return det

    def tense(self) -> str:
        return self.rng.choices(("pres", "past", "fut"), cum_weights=(0.4, 0.75, 1.0))[0]

    def pps(self, p: float) -> list[PP]:
        out = []
        while self.chance(p) and len(out) < 2:
            out.append(PP(self.rng.choice(_PREPS), self.np("*", top=False, allow_pron=False)))
            p /= 4
        return out

    def relative(self, head: NP) -> Clause:
        """A relative clause without adverbs or PPs, so attachment stays unambiguous."""
        sel = "a" if head.animate else "t"
        if self.chance(0.65):  # subject gap: "the man who sees the dog"
            verb = self.verb("it", subj=sel)
            obj = self.np(verb.obj, top=False) if verb.frame == "t" else None
            return Clause(head, verb, self.tense(), dobj=obj, gap="subj")
        verb = self.verb("t", subj="a", obj=sel)  # object gap: "the dog that the man sees"
        return Clause(self.np("a", top=False), verb, self.tense(), dobj=head, gap="obj")

    def verb(self, frames: str, subj: str = "*", obj: str = "*") -> Verb:
        while True:
            verb = self.rng.choice(self.lex.verbs)
            if verb.frame not in frames:
                continue
            subj_ok = subj == "*" or verb.subj in ("*", subj)
            obj_ok = verb.frame != "t" or obj == "*" or verb.obj in ("*", obj)
            if subj_ok and obj_ok:
                return verb

    def clause(self, top: bool) -> Clause:
        """A declarative clause; ``top`` allows fronting, complements and adverbial clauses."""
        tense = self.tense()
        if self.chance(0.12):
            cl = self.copular(tense, top)
        else:
            frames, cum = ("itdc", (25, 75, 87, 100)) if top else ("itd", (3, 8, 9))
            verb = self.verb(self.rng.choices(frames, cum_weights=cum)[0])
            cl = Clause(self.np(verb.subj, top), verb, tense)
            if verb.frame in "td":
                cl.dobj = self.np(verb.obj if verb.frame == "t" else "t", top)
            if verb.frame == "d":
                cl.iobj = self.np("a", top=False)
                cl.iobj_to = self.chance(0.5)
            if verb.frame == "c":
                cl.comp = self.clause(top=False)
                cl.comp_that = self.chance(0.7)
            if verb.frame != "c":  # a PP before a bare complement clause would read ambiguously
                cl.pps = self.pps(0.2 if top else 0.1)
            if cl.subj.animate and self.chance(0.15):
                cl.manner = self.rng.choice(self.lex.manner)
        self.adverbs(cl, top)
        if top and cl.comp is None and self.chance(0.15):
            cl.sub, cl.conj = self.clause(top=False), self.rng.choice(_CONJS)
            cl.sub_front = self.chance(0.4)
        return cl

    def copular(self, tense: str, top: bool) -> Clause:
        cl = Clause(self.np("*", top), None, tense)
        if self.chance(0.7) and cl.subj.noun is not None:
            cl.pred_adj = self.adjective(cl.subj.noun, cl.subj.adjs)
        elif self.chance(0.7) or cl.subj.noun is None:
            cl.pred_adj = self.rng.choice([a for a in self.lex.adjs if a.sel in "*a"])
        else:
            cl.pred_pp = PP(self.rng.choice(_PREPS), self.np("t", top=False, allow_pron=False))
        return cl

    def adverbs(self, cl: Clause, top: bool) -> None:
        cl.neg = self.chance(0.2)
        cl.contract = self.chance(0.3)
        if self.chance(0.1) and not cl.neg:
            cl.freq = self.rng.choice(_FREQ)
        if top and self.chance(0.2):
            fitting = [t for t in _TIME if t.tag in ("", cl.tense)]
            cl.time = self.rng.choice(fitting)
            cl.time_front = self.chance(0.5)

    def sentence(self) -> tuple[Clause, bool]:
        """A main clause and whether it is a yes/no question."""
        if self.chance(0.15):
            tense = self.tense()
            cl = self.copular(tense, top=False) if self.chance(0.3) else None
            if cl is None:
                verb = self.verb("it")
                cl = Clause(self.np(verb.subj, top=False), verb, tense)
                if verb.frame == "t":
                    cl.dobj = self.np(verb.obj, top=False)
                cl.pps = self.pps(0.3)
            if self.chance(0.1):
                cl.freq = self.rng.choice(_FREQ)
            return cl, True
        return self.clause(top=True), False


# ------------------------------------------------------------------------- source rendering


def _src_np(np: NP, obj: bool) -> list[Tok]:
    if np.pron is not None:
        return [(np.pron.acc if obj else np.pron.nom, _k(np, "head"))]
    if np.name is not None:
        return [(np.name, _k(np, "head"))]
    out: list[Tok] = []
    det = np.det.en_pl if np.plural else np.det.en_sg
    if det:
        out.append((det, _k(np, "det")))
    if np.number is not None:
        out.append((np.number.en, _k(np, "num")))
    out += [(a.en, _k(a, "adj") + _k(np, "adj")) for a in np.adjs]
    if np.modifier is not None:
        out.append((np.modifier.en, _k(np, "mod")))
    out.append((np.noun.en_pl if np.plural else np.noun.en, _k(np, "head")))
    if np.gen is not None:
        out += [("of", _k(np, "gen"))] + _src_np(np.gen, obj=True)
    if np.rel is not None:
        out += _src_clause(np.rel, "rel")
    return out


def _src_verb_group(cl: Clause, question: bool) -> tuple[list[Tok], list[Tok]]:
    """English finite part and the rest of the verb group (split for subject-aux inversion)."""
    fin, verb, neg = _k(cl, "fin"), _k(cl, "verb"), _k(cl, "neg")
    third = cl.subj.slot == 2
    if cl.verb is None:
        if cl.tense == "fut":
            aux, main = "will", [("be", verb)]
        elif cl.tense == "pres":
            aux, main = ("am" if cl.subj.slot == 0 else "is" if third else "are"), []
        else:
            aux, main = ("was" if cl.subj.slot in (0, 2) else "were"), []
    elif cl.tense == "fut":
        aux, main = "will", [(cl.verb.en, verb)]
    elif not cl.neg and not question:
        form = cl.verb.past if cl.tense == "past" else cl.verb.en3 if third else cl.verb.en
        return [], [(form, fin + verb)]
    else:
        aux = "did" if cl.tense == "past" else "does" if third else "do"
        main = [(cl.verb.en, verb)]
    if not cl.neg:
        return [(aux, fin)], main
    if cl.contract and aux != "am":
        contracted = "won't" if aux == "will" else aux + "n't"
        return [(contracted, fin + neg)], main
    return [(aux, fin), ("not", neg)], main


def _src_clause(cl: Clause, kind: str) -> list[Tok]:
    """English clause; kind is main, question, sub (after its conjunction) or rel."""
    out: list[Tok] = []
    if kind == "rel":
        pron = "who" if cl.gap == "subj" and cl.subj.animate else "that"
        out.append((pron, _k(cl, "rel")))
    if kind == "main" and cl.sub is not None and cl.sub_front:
        out += [(cl.conj.en, _k(cl, "conj"))] + _src_clause(cl.sub, "sub") + [(",", ())]
    elif kind == "main" and cl.time is not None and cl.time_front:
        out += [(cl.time.en, _k(cl, "time")), (",", ())]
    fin, rest = _src_verb_group(cl, kind == "question")
    freq = [(cl.freq.en, _k(cl, "freq"))] if cl.freq is not None else []
    subj = [] if cl.gap == "subj" else _src_np(cl.subj, obj=False)
    if kind == "question":
        out += fin + subj + freq + rest
    elif fin and (cl.verb is None or rest):
        out += subj + fin + freq + rest  # "will often see", "is often", "does not see"
    else:
        out += subj + freq + fin + rest  # "often sees"
    if cl.iobj is not None and not cl.iobj_to:
        out += _src_np(cl.iobj, obj=True)
    if cl.dobj is not None and cl.gap != "obj":
        out += _src_np(cl.dobj, obj=True)
    if cl.iobj is not None and cl.iobj_to:
        out += [("to", _k(cl, "to"))] + _src_np(cl.iobj, obj=True)
    if cl.pred_adj is not None:
        out.append((cl.pred_adj.en, _k(cl, "pred")))
    for pp in [cl.pred_pp] * (cl.pred_pp is not None) + cl.pps:
        out += [(pp.prep.en, _k(pp, "prep"))] + _src_np(pp.np, obj=True)
    if cl.manner is not None:
        out.append((cl.manner.en, _k(cl, "manner")))
    if cl.time is not None and not cl.time_front:
        out.append((cl.time.en, _k(cl, "time")))
    if cl.comp is not None:
        out += [("that", _k(cl, "comp"))] * cl.comp_that + _src_clause(cl.comp, "sub")
    if kind == "main" and cl.sub is not None and not cl.sub_front:
        out += [(cl.conj.en, _k(cl, "conj"))] + _src_clause(cl.sub, "sub")
    return out


# ------------------------------------------------------------------------- target rendering


def _gnum(np: NP) -> int:
    return 3 if np.plural else np.gender


def _tgt_noun(np: NP) -> Tok:
    noun = np.noun
    stem = noun.tgt + (_PLURAL[noun.gender] if np.plural else "")
    keys = _k(np, "head")
    if np.modifier is not None:
        stem = np.modifier.tgt + _LINKER[np.modifier.gender] + stem
        keys += _k(np, "mod")
    return stem.capitalize(), keys


def _tgt_np(np: NP, case: str) -> list[Tok]:
    if np.pron is not None:
        return [(np.pron.tgt[("nom", "acc", "dat").index(case)], _k(np, "head"))]
    if np.name is not None:
        return [(np.name + "s" * (case == "gen"), _k(np, "head"))]
    out: list[Tok] = []
    if np.gen is not None:
        out += _tgt_np(np.gen, "gen")
    elif np.det.tgt:
        out.append((np.det.tgt + _CASE_END[case][_gnum(np)], _k(np, "det")))
    if np.number is not None:
        out.append((np.number.tgt, _k(np, "num")))
    out.append(_tgt_noun(np))
    # adjectives follow the noun, in mirror order ("big red house" -> house red big)
    out += [(a.tgt + _ADJ_END[_gnum(np)], _k(a, "adj") + _k(np, "adj")) for a in reversed(np.adjs)]
    if np.rel is not None:
        out += [(",", ())] + _tgt_clause(np.rel, "rel") + [(",", ())]
    return out


def _tgt_pp(pp: PP) -> list[Tok]:
    prep = [(pp.prep.tgt, _k(pp, "prep"))]
    np = _tgt_np(pp.np, "dat")
    return np + prep if pp.prep.tag == "post" else prep + np


def _tgt_verbs(cl: Clause) -> tuple[list[Tok], list[Tok]]:
    """Finite verb and clause-final infinitive (empty unless future)."""
    fin, verb, slot = _k(cl, "fin"), _k(cl, "verb"), cl.subj.slot
    if cl.tense == "fut":
        inf = _COP_INF if cl.verb is None else cl.verb.tgt + _INF
        return [(_FUT_AUX + _PERSON_END[slot], fin)], [(inf, verb)]
    if cl.verb is None:
        return [(_COPULA[cl.tense][slot], fin + verb)], []
    infix = _PAST_INFIX if cl.tense == "past" else ""
    return [(cl.verb.tgt + infix + _PERSON_END[slot], fin + verb)], []


def _tgt_middle(cl: Clause, with_time: bool) -> list[Tok]:
    """The middle field: time, frequency, dative, accusative, negation, manner, PPs, predicate."""
    out: list[Tok] = []
    if with_time and cl.time is not None:
        out.append((cl.time.tgt, _k(cl, "time")))
    if cl.freq is not None:
        out.append((cl.freq.tgt, _k(cl, "freq")))
    if cl.iobj is not None:
        out += _tgt_np(cl.iobj, "dat")
    if cl.dobj is not None and cl.gap != "obj":
        out += _tgt_np(cl.dobj, "acc")
    if cl.neg:
        out.append((_NEG, _k(cl, "neg")))
    if cl.manner is not None:
        out.append((cl.manner.tgt, _k(cl, "manner")))
    for pp in cl.pps:
        out += _tgt_pp(pp)
    if cl.pred_adj is not None:
        out.append((cl.pred_adj.tgt, _k(cl, "pred")))  # predicative adjectives do not agree
    if cl.pred_pp is not None:
        out += _tgt_pp(cl.pred_pp)
    return out


def _tgt_clause(cl: Clause, kind: str) -> list[Tok]:
    """Target clause: V2 for main, verb-first for question, verb-final for sub and rel."""
    fin, inf = _tgt_verbs(cl)
    if kind == "rel":  # the relative pronoun is the article form: head's gender, gap's case
        head = cl.subj if cl.gap == "subj" else cl.dobj
        case = "nom" if cl.gap == "subj" else "acc"
        pron = [("d" + _CASE_END[case][_gnum(head)], _k(cl, "rel"))]
        subj = pron if cl.gap == "subj" else pron + _tgt_np(cl.subj, "nom")
        return subj + _tgt_middle(cl, True) + inf + fin
    subj = _tgt_np(cl.subj, "nom")
    if kind == "sub":
        return subj + _tgt_middle(cl, True) + inf + fin
    if kind == "question":
        return fin + subj + _tgt_middle(cl, True) + inf
    out: list[Tok] = []
    if cl.sub is not None and cl.sub_front:
        front = [(cl.conj.tgt, _k(cl, "conj"))] + _tgt_clause(cl.sub, "sub") + [(",", ())]
        out += front + fin + subj
    elif cl.time is not None and cl.time_front:
        out += [(cl.time.tgt, _k(cl, "time"))] + fin + subj
    else:
        out += subj + fin
    out += _tgt_middle(cl, not cl.time_front) + inf
    if cl.comp is not None:
        out += [(",", ()), (_COMP, _k(cl, "comp"))] + _tgt_clause(cl.comp, "sub")
    if cl.sub is not None and not cl.sub_front:
        out += [(",", ()), (cl.conj.tgt, _k(cl, "conj"))] + _tgt_clause(cl.sub, "sub")
    return out


# ------------------------------------------------------------------------------- surface text

_PUNCT = {",", ".", "?"}


def _finish(toks: list[Tok], end: str, english: bool) -> list[Tok]:
    """Drop empty and doubled commas, fix a/an, add final punctuation, capitalise the start."""
    out: list[Tok] = []
    for text, keys in [*toks, (end, ())]:
        if not text:
            continue
        if text in _PUNCT and (not out or out[-1][0] in _PUNCT):
            if out and out[-1][0] == "," and text != ",":
                out[-1] = (text, keys)
            continue
        if english and out and out[-1][0] == "a" and text[0] in "aeiou":
            out[-1] = ("an", out[-1][1])
        out.append((text, keys))
    first, keys = out[0]
    out[0] = (first[0].upper() + first[1:], keys)
    return out


def _detok(toks: list[Tok]) -> str:
    text = ""
    for word, _ in toks:
        text += word if word in _PUNCT or not text else " " + word
    return text


@dataclass(frozen=True)
class Pair:
    """One sentence pair with a word alignment over the space/punctuation tokens of each side."""

    src: str
    tgt: str
    src_tokens: tuple[str, ...]
    tgt_tokens: tuple[str, ...]
    alignment: tuple[tuple[int, int], ...]  # (source index, target index), sorted


def _align(src: list[Tok], tgt: list[Tok]) -> tuple[tuple[int, int], ...]:
    where: dict[object, list[int]] = {}
    for i, (_, keys) in enumerate(src):
        for key in keys:
            where.setdefault(key, []).append(i)
    links = {(i, j) for j, (_, keys) in enumerate(tgt) for key in keys for i in where.get(key, ())}
    return tuple(sorted(links))


def render(cl: Clause, question: bool, align: bool = False) -> Pair:
    end = "?" if question else "."
    kind = "question" if question else "main"
    src = _finish(_src_clause(cl, kind), end, english=True)
    tgt = _finish(_tgt_clause(cl, kind), end, english=False)
    return Pair(
        _detok(src),
        _detok(tgt),
        tuple(t for t, _ in src),
        tuple(t for t, _ in tgt),
        _align(src, tgt) if align else (),
    )


# ------------------------------------------------------------------------------ corpus level


def _split_rng(seed: int, split: str) -> random.Random:
    # string seeds are hashed with SHA-512 by ``random``: stable across platforms and runs
    return random.Random(f"admin-demo-corpus/{seed}/{split}")


def iter_pairs(seed: int, split: str, align: bool = False) -> Iterator[Pair]:
    """An endless stream of sentence pairs for one split (duplicates possible)."""
    sampler = _Sampler(_split_rng(seed, split))
    while True:
        yield render(*sampler.sentence(), align=align)


def generate(
    seed: int, sizes: dict[str, int] | None = None, align: bool = False
) -> dict[str, list[Pair]]:
    """Pairs per split; sentences are unique across and within splits (source and target)."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    seen_src: set[str] = set()
    seen_tgt: set[str] = set()
    corpus: dict[str, list[Pair]] = {}
    for split in SPLITS:
        want, pairs = sizes[split], []
        stream = iter_pairs(seed, split, align)
        tries = 0
        while len(pairs) < want:
            pair = next(stream)
            tries += 1
            if pair.src in seen_src or pair.tgt in seen_tgt:
                if tries > 20 * want + 1000:
                    raise AdminError(f"demo corpus: cannot find {want} unique {split} pairs")
                continue
            seen_src.add(pair.src)
            seen_tgt.add(pair.tgt)
            pairs.append(pair)
        corpus[split] = pairs
    return corpus


def write_corpus(out: Path, seed: int, sizes: dict[str, int] | None = None) -> list[Path]:
    """Write ``{split}.{xs,xt}`` under ``out``; each file appears only once complete."""
    corpus = generate(seed, sizes)
    written = []
    for split, pairs in corpus.items():
        for lang, side in ((SRC_LANG, "src"), (TGT_LANG, "tgt")):
            path = out / f"{split}.{lang}"
            text = "".join(getattr(p, side) + "\n" for p in pairs)
            with atomic_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
            written.append(path)
    return written


# ------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m admin.data.demo_corpus",
        description=f"Generate the synthetic {SRC_LANG}-{TGT_LANG} demo corpus "
        f"({{train,valid,test}}.{{{SRC_LANG},{TGT_LANG}}}, raw text).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", required=True, type=int, help="chooses the sentences")
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, default=DEFAULT_SIZES[split], metavar="N")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        raise AdminError(f"--out {args.out} exists and is not a folder")
    if args.seed < 0:
        raise AdminError(f"--seed must be >= 0, got {args.seed}")
    sizes = {split: getattr(args, split) for split in SPLITS}
    for split, size in sizes.items():
        if size < 1:
            raise AdminError(f"--{split} must be a positive number of pairs, got {size}")
    for path in write_corpus(args.out, args.seed, sizes):
        print(path)
    return 0


if __name__ == "__main__":
    run_cli(main)
