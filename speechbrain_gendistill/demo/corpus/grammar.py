"""The text of the synthetic corpus: a small sentence grammar over word lists of this project.

The vocabulary is deliberately small (a few hundred words) so that a tiny CTC
model can learn it from half an hour of speech, while the grammar combines the
words into many different sentences: statements, questions, numbers, contractions
and joined clauses, with punctuation that the synthesiser turns into prosody.
"""

from __future__ import annotations

import random
import re

NAMES = "anna peter maria thomas lucy daniel clara martin nora oscar helen simon emma jacob rosa felix".split()
PEOPLE = "farmer teacher doctor sailor painter baker driver neighbor singer soldier student captain".split()
ANIMALS = "dog cat horse bird rabbit goat".split()
THINGS = "box letter basket lamp table chair window door boat wagon candle bottle coat hat book map key bell".split()
FOODS = "apple cake pear onion".split()
PLACES = "garden kitchen market river forest village harbor station bridge hill field road house school mill".split()
ADJECTIVES = (
    "old young small large red green blue heavy quiet bright dark warm cold tired happy clever "
    "broken empty wooden yellow strange gentle busy careful"
).split()
ADVERBS = "slowly quickly quietly carefully happily suddenly".split()
PREPOSITIONS = "near behind under beside across inside along past over".split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
TIMES = [
    "yesterday",
    "today",
    "this morning",
    "last night",
    "in the evening",
    "after dinner",
    "before noon",
    "at dawn",
    "every week",
    "once again",
]
# (past tense, base form) of verbs that take an object.
TRANSITIVE = [
    ("carried", "carry"),
    ("opened", "open"),
    ("painted", "paint"),
    ("found", "find"),
    ("lost", "lose"),
    ("sold", "sell"),
    ("bought", "buy"),
    ("washed", "wash"),
    ("fixed", "fix"),
    ("cleaned", "clean"),
    ("pushed", "push"),
    ("pulled", "pull"),
    ("watched", "watch"),
    ("borrowed", "borrow"),
    ("dropped", "drop"),
    ("packed", "pack"),
    ("brought", "bring"),
    ("took", "take"),
    ("hid", "hide"),
    ("counted", "count"),
]
# (past tense, base form) of verbs without an object.
INTRANSITIVE = [
    ("walked", "walk"),
    ("waited", "wait"),
    ("slept", "sleep"),
    ("laughed", "laugh"),
    ("sang", "sing"),
    ("worked", "work"),
    ("rested", "rest"),
    ("stayed", "stay"),
    ("danced", "dance"),
    ("listened", "listen"),
    ("smiled", "smile"),
    ("arrived", "arrive"),
    ("returned", "return"),
    ("played", "play"),
]
NUMBERS = "two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty".split()
CONJUNCTIONS = ["and", "but", "because", "so", "while"]
PRONOUN_CONTRACTIONS = ["i'm", "we're", "they're", "she's", "he's", "you're"]
MODAL_CONTRACTIONS = ["don't", "can't", "won't", "didn't", "shouldn't"]
FEELINGS = "sure glad afraid ready sorry certain".split()

FUNCTION_WORDS = "the there were was did where go why how many on it's we they i you".split()
IRREGULAR_PLURALS = {"box": "boxes"}
_SENTENCE_KINDS = ("action", "motion", "question", "count", "feeling", "possession", "joined")


def plural(noun: str) -> str:
    """The plural of one of the grammar's nouns.

    Example
    -------
    >>> plural("box"), plural("dog")
    ('boxes', 'dogs')
    """
    return IRREGULAR_PLURALS.get(noun, noun + "s")


def normalize_transcript(text: str) -> str:
    """A transcript as LibriSpeech writes it: upper case, letters, apostrophes and single spaces.

    Example
    -------
    >>> normalize_transcript("Did Anna's dog sleep, near the mill?")
    "DID ANNA'S DOG SLEEP NEAR THE MILL"
    """
    return " ".join(re.sub(r"[^A-Z' ]", " ", text.upper()).split())


class SentenceGrammar:
    """Draws English sentences from this project's grammar, with a seeded random generator.

    Arguments
    ---------
    seed : int
        Seed of the generator: the same seed gives the same sequence of sentences.

    Example
    -------
    >>> grammar = SentenceGrammar(seed=0)
    >>> sentence = grammar.sentence()
    >>> sentence == SentenceGrammar(seed=0).sentence()
    True
    >>> set(normalize_transcript(sentence).lower().split()) <= SentenceGrammar.vocabulary()
    True
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    @staticmethod
    def vocabulary() -> set[str]:
        """Every word a sentence can contain (lower case)."""
        nouns = PEOPLE + ANIMALS + THINGS + FOODS
        words = set(NAMES + nouns + PLACES + ADJECTIVES + ADVERBS + PREPOSITIONS + DAYS + NUMBERS + FEELINGS)
        words |= {plural(noun) for noun in nouns} | {name + "'s" for name in NAMES}
        words |= {word for pair in TRANSITIVE + INTRANSITIVE for word in pair}
        words |= {word for time in TIMES for word in time.split()}
        words |= set(CONJUNCTIONS + PRONOUN_CONTRACTIONS + MODAL_CONTRACTIONS)
        words |= set(FUNCTION_WORDS)
        return words

    def number_sequence(self) -> str:
        """Three to six number words in random order, ending in a full stop, as a spoken-digits corpus has.

        Its vocabulary is ``NUMBERS`` and there is no word order to learn, so a
        recogniser trained on a few minutes of them can only score well on new
        speakers by hearing the words: word error rates mean something after
        minutes of training, unlike on sentences.
        """
        return " ".join(self.rng.choice(NUMBERS) for _ in range(self.rng.randint(3, 6))) + "."

    def sentence(self) -> str:
        """One sentence with its punctuation, lower case, as the synthesiser reads it."""
        kind = self.rng.choice(_SENTENCE_KINDS)
        if kind == "joined":
            first, second = self._clause(), self._clause()
            return f"{first}, {self.rng.choice(CONJUNCTIONS)} {second}."
        if kind == "question":
            return self._question()
        return getattr(self, "_" + kind)() + "."

    def _clause(self) -> str:
        return getattr(self, "_" + self.rng.choice(("action", "motion", "feeling", "possession")))()

    def _maybe(self, probability: float, text: str) -> str:
        return text if self.rng.random() < probability else ""

    def _join(self, *parts: str) -> str:
        return " ".join(part for part in parts if part)

    def _noun_phrase(self, animate: bool = False) -> str:
        """A name or a noun with its determiner; ``animate`` keeps to people and animals (subjects)."""
        choice = self.rng.random()
        if choice < 0.25:
            return self.rng.choice(NAMES)
        noun = self.rng.choice(PEOPLE + ANIMALS if animate else PEOPLE + ANIMALS + THINGS + FOODS)
        if choice < 0.35:
            return self._join(self.rng.choice(NAMES) + "'s", self._maybe(0.4, self.rng.choice(ADJECTIVES)), noun)
        return self._join("the", self._maybe(0.5, self.rng.choice(ADJECTIVES)), noun)

    def _place(self) -> str:
        return self._join(self.rng.choice(PREPOSITIONS), "the", self.rng.choice(PLACES))

    def _time(self) -> str:
        return self.rng.choice(TIMES) if self.rng.random() < 0.7 else "on " + self.rng.choice(DAYS)

    def _action(self) -> str:
        verb = self.rng.choice(TRANSITIVE)[0]
        return self._join(
            self._noun_phrase(animate=True),
            self._maybe(0.2, self.rng.choice(ADVERBS)),
            verb,
            self._noun_phrase(),
            self._maybe(0.5, self._place()),
            self._maybe(0.3, self._time()),
        )

    def _motion(self) -> str:
        verb = self.rng.choice(INTRANSITIVE)[0]
        return self._join(
            self._noun_phrase(animate=True),
            verb,
            self._maybe(0.4, self.rng.choice(ADVERBS)),
            self._place(),
            self._maybe(0.4, self._time()),
        )

    def _count(self) -> str:
        noun = plural(self.rng.choice(PEOPLE + ANIMALS + THINGS + FOODS))
        if self.rng.random() < 0.5:
            return self._join(
                "there were",
                self.rng.choice(NUMBERS),
                self._maybe(0.4, self.rng.choice(ADJECTIVES)),
                noun,
                self._place(),
            )
        return self._join(self.rng.choice(NAMES), self.rng.choice(TRANSITIVE)[0], self.rng.choice(NUMBERS), noun)

    def _feeling(self) -> str:
        subject = self.rng.choice(PRONOUN_CONTRACTIONS)
        if self.rng.random() < 0.5:
            return self._join(subject, self.rng.choice(FEELINGS), "it's", self.rng.choice(ADJECTIVES))
        modal = self.rng.choice(MODAL_CONTRACTIONS)
        pronoun = self.rng.choice(("we", "they", "i", "you"))
        return self._join(pronoun, modal, self.rng.choice(INTRANSITIVE)[1], self._place())

    def _possession(self) -> str:
        owner = self.rng.choice(NAMES) + "'s"
        return self._join(owner, self.rng.choice(THINGS), "was", self.rng.choice(ADJECTIVES), self._place())

    def _question(self) -> str:
        choice = self.rng.random()
        if choice < 0.4:
            verb = self.rng.choice(TRANSITIVE)[1]
            return (
                self._join(
                    "did", self._noun_phrase(animate=True), verb, self._noun_phrase(), self._maybe(0.5, self._time())
                )
                + "?"
            )
        if choice < 0.55:
            return self._join("where did", self._noun_phrase(animate=True), "go", self._time()) + "?"
        if choice < 0.7:
            return self._join("why was", self._noun_phrase(), self.rng.choice(ADJECTIVES)) + "?"
        noun = plural(self.rng.choice(PEOPLE + ANIMALS + THINGS + FOODS))
        return self._join("how many", noun, "were there", self._place()) + "?"
