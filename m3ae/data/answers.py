"""VQA answer normalisation and label sets, as the VQA evaluation and the paper's code do it.

An answer is lower-cased, stripped of punctuation (keeping decimal points and
thousands commas), number words become digits, articles are dropped and
common contractions are restored ("dont" -> "don't"). Every distinct
normalised answer over all splits becomes one label (in order of first
appearance: train, then val, then test), with score 1.0 for the given answer.

The official code's `normalize_word` (github.com/zhjohnchan/M3AE,
prepro/glossary.py) gives the same string for every answer except those with
one of the VQA evaluation's rarer contractions that the table below leaves out
("shouldnt've", "whatre", "twas"). A released head's class order is computed
with this function (m3ae/data/real/vqa.py), so its classes line up with the
official ones as long as the two merge the same answers.
"""

from __future__ import annotations

import re

_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itll": "it'll", "let's": "let's", "maam": "ma'am",
    "mightnt": "mightn't", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't",
    "notve": "not've", "oclock": "o'clock", "shant": "shan't",
    "shouldve": "should've", "shouldnt": "shouldn't", "somebodys": "somebody's", "someones": "someone's",
    "thats": "that's", "thered": "there'd", "theres": "there's", "theyd": "they'd", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "wasnt": "wasn't", "weve": "we've", "werent": "weren't",
    "whats": "what's", "whens": "when's", "wheres": "where's", "whos": "who's", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "yall": "y'all", "youd": "you'd", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out)


def normalize_answer(answer) -> str:
    """'Two.' -> '2', 'The left lung' -> 'left lung', 'Yes' -> 'yes'. Numbers are stringified first."""
    text = _punctuation(str(answer).lower())  # as given: the punctuation rule looks at the spaces
    words = [_NUMBERS.get(w, w) for w in text.split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def label_set(answers_by_split: dict[str, list[str]]) -> list[str]:
    """Distinct (already normalised) answers in order of first appearance over train, val, test."""
    seen: dict[str, None] = {}
    for split in ("train", "val", "test"):
        for answer in answers_by_split.get(split, []):
            seen.setdefault(answer, None)
    return list(seen)
