"""The trained tokenizer: deterministic across processes, complete, capped at its size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from m3ae.data.tokenizer import SPECIAL_TOKENS, train_wordpiece

TEXTS = ["Chest CT. A small nodule is seen in the left lung.", "Head MRI. No abnormality.",
         "Abdomen x-ray. A large cyst is seen in the right kidney; it is oval.", "No nodule. No cyst."]

_VOCAB_IN_A_NEW_PROCESS = """
import json, sys
from m3ae.config import profile
from m3ae.data.corpus import pretrain_corpus
from m3ae.data.tokenizer import train_wordpiece
cfg = profile("smoke")
print(json.dumps(train_wordpiece(pretrain_corpus(cfg), cfg.data.vocab_size).get_vocab(), sort_keys=True))
"""


def test_vocabulary_is_the_same_in_every_process():
    # tokenizers' own trainer broke count ties in a per-process (hash) order: two fresh
    # work directories got different vocabularies from byte-identical corpora
    vocabs = []
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", _VOCAB_IN_A_NEW_PROCESS], env=env, check=True,
                             capture_output=True, text=True).stdout
        vocabs.append(json.loads(out.strip().splitlines()[-1]))
    assert vocabs[0] == vocabs[1] == vocabs[2]
    assert len(vocabs[0]) > 50


def test_frequent_words_are_single_pieces_and_ids_follow_counts():
    tok = train_wordpiece(TEXTS, 1000)
    vocab = tok.get_vocab()
    assert [vocab[s] for s in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.tokenize("No nodule seen.") == ["no", "nodule", "seen", "."]
    assert vocab["is"] < vocab["nodule"]  # 'is' occurs 3 times, 'nodule' twice: counts first
    assert vocab["cyst"] < vocab["nodule"]  # equal counts: alphabetical, never hash order


def test_unknown_words_are_spelt_with_characters():
    tok = train_wordpiece(TEXTS, 1000)
    pieces = tok.tokenize("nodules")  # not in the corpus as a word
    assert pieces[0] == "nodule" and pieces[1:] == ["##s"]
    assert tok.decode(tok("lesion")["input_ids"], skip_special_tokens=True) == "lesion"
    assert "[UNK]" not in tok.tokenize("lesion")


def test_vocab_size_caps_the_vocabulary():
    small = train_wordpiece(TEXTS, 60)
    assert len(small) == 60
    assert len(train_wordpiece(TEXTS, 1000)) < 1000  # every word fits: no padding pieces
