"""A generated movie-review corpus whose labels need word order and negation.

    reviews = generate_reviews(2000, seed=0)        # [Review(text, label), ...], balanced
    write_jsonl(reviews, Path("reviews.jsonl"))     # then: onyx train text reviews.jsonl

Every review is built from clauses such as "the plot was not bad at all" whose polarity is the
adjective's flipped by an optional negation, combined by templates where the order decides:

    "<clause -y> but <clause y>"         the clause after "but" wins
    "although <clause -y> , <clause y>"  the main clause wins
    "<subject> was <adj y> , not <adj -y>"   "bad , not good" is negative
    "<clause y>"                         negation flips the adjective (an XOR of two words)

In the first three, swapping the two halves swaps the label but not the words, and in the last
one the label is an XOR of "not" and the adjective: a bag-of-words model cannot do much better
than chance on most of it, while a recurrent net reading in order gets it right. Neutral filler
sentences vary the lengths.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LABELS = ("negative", "positive")
_POSITIVE = (
    "good",
    "great",
    "excellent",
    "wonderful",
    "brilliant",
    "enjoyable",
    "superb",
    "charming",
    "moving",
    "clever",
)
_NEGATIVE = (
    "bad",
    "awful",
    "terrible",
    "boring",
    "dull",
    "weak",
    "poor",
    "horrible",
    "mediocre",
    "clumsy",
)
_SUBJECTS = (
    "the movie",
    "this film",
    "the plot",
    "the acting",
    "the story",
    "the soundtrack",
    "the ending",
    "the cast",
    "the script",
    "the direction",
    "the dialogue",
)
_VERBS = ("was", "is", "seemed", "felt")
# Both spellings tokenize to "<verb> not" (see onyx.contract.text), so the corpus exercises that.
_NEGATIONS = ("not", "never", "n't")
_CONTRACTED = {"was": "wasn't", "is": "isn't", "seemed": "didn't seem", "felt": "didn't feel"}
_INTENSIFIERS = ("", "", "really ", "very ", "quite ", "truly ")
_FILLERS = (
    "i watched it on sunday .",
    "my friend recommended it to me .",
    "it runs for about two hours .",
    "we saw it in a small cinema .",
    "the trailer gave away a lot .",
    "i had read the book first .",
    "it was released last year .",
    "the popcorn was cold .",
)


@dataclass(frozen=True)
class Review:
    text: str
    label: str


def _clause(rng: random.Random, polarity: int) -> str:
    """A clause of the given polarity (1 positive, 0 negative), negated half the time."""
    negated = rng.random() < 0.5
    adjectives = _POSITIVE if polarity != negated else _NEGATIVE
    subject, verb = rng.choice(_SUBJECTS), rng.choice(_VERBS)
    adjective = rng.choice(_INTENSIFIERS) + rng.choice(adjectives)
    if not negated:
        return f"{subject} {verb} {adjective}"
    negation = rng.choice(_NEGATIONS)
    if negation == "n't":
        verb = _CONTRACTED[verb]
        negation = ""
    tail = " at all" if rng.random() < 0.3 else ""
    return f"{subject} {verb} {negation + ' ' if negation else ''}{adjective}{tail}"


def _body(rng: random.Random, label: int) -> str:
    template = rng.randrange(4)
    if template == 0:
        return f"{_clause(rng, 1 - label)} but {_clause(rng, label)} ."
    if template == 1:
        return f"although {_clause(rng, 1 - label)} , {_clause(rng, label)} ."
    if template == 2:
        good, bad = rng.choice(_POSITIVE), rng.choice(_NEGATIVE)
        first, second = (good, bad) if label else (bad, good)
        return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {first} , not {second} ."
    return f"{_clause(rng, label)} ."


def review(rng: random.Random, label: int) -> Review:
    """One review: 0-3 neutral sentences around the sentiment-bearing one."""
    fillers = rng.sample(_FILLERS, rng.randrange(4))
    cut = rng.randrange(len(fillers) + 1)
    text = " ".join([*fillers[:cut], _body(rng, label), *fillers[cut:]])
    return Review(text[0].upper() + text[1:], LABELS[label])


def generate_reviews(count: int, seed: int = 0) -> list[Review]:
    """`count` reviews, alternating labels so the classes are balanced."""
    rng = random.Random(seed)
    return [review(rng, index % 2) for index in range(count)]


def write_jsonl(reviews: Sequence[Review], path: Path) -> Path:
    """One {"text": ..., "label": ...} object per line (`onyx train text` reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"text": r.text, "label": r.label}) for r in reviews)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
