"""The text tokenizer: a WordPiece vocabulary trained on the pre-training corpus
(cached in the transformers format), or a local pretrained tokenizer directory.

Whole-word masking needs word boundaries: `encoding.word_ids()` of a fast
tokenizer gives them, for ours and for any pretrained fast tokenizer.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from m3ae.batch import TextVocab
from m3ae.data.cache import cached_entry, entry_name
from m3ae.versions import TOKENIZER_VERSION

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_tokenizer(cfg, cache_dir: Path):
    """A `transformers.PreTrainedTokenizerFast` for cfg: cfg.data.tokenizer if set,
    else WordPiece (cfg.data.vocab_size) trained on cfg.data.pretrain's training texts."""
    from transformers import PreTrainedTokenizerFast

    if cfg.data.tokenizer:
        return load_pretrained(cfg.data.tokenizer)
    from m3ae.data.corpus import pretrain_corpus, pretrain_corpus_key

    settings = {"version": TOKENIZER_VERSION, "vocab_size": cfg.data.vocab_size, "corpus": pretrain_corpus_key(cfg)}

    def build(out: Path) -> None:
        train_wordpiece(pretrain_corpus(cfg), cfg.data.vocab_size).save_pretrained(out)

    entry = cached_entry(Path(cache_dir) / "tokenizers", entry_name("wordpiece", settings), build, settings)
    return PreTrainedTokenizerFast.from_pretrained(str(entry))


def train_wordpiece(texts, vocab_size: int):
    """A lower-casing BERT-style WordPiece tokenizer whose vocabulary is built from
    `texts` by `wordpiece_vocab`: the same texts give the same vocabulary in every process."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    vocab = wordpiece_vocab(texts, vocab_size, normalizer, pre_tokenizer)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def wordpiece_vocab(texts, vocab_size: int, normalizer, pre_tokenizer) -> dict[str, int]:
    """Piece -> id: the special tokens, every character (alone and as a '##'
    continuation, most frequent first), then whole words by (-count, word) until
    `vocab_size`. Every order is total, so no tie is left to hash order; a word
    outside the vocabulary is spelt with the character pieces."""
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars: Counter[str] = Counter()
    for word, count in words.items():
        for char in word:
            chars[char] += count
    by_count = lambda counter: sorted(counter, key=lambda piece: (-counter[piece], piece))  # noqa: E731
    pieces = list(SPECIAL_TOKENS)
    for char in by_count(chars):
        pieces += [char, "##" + char]
    taken = set(pieces)
    pieces += [word for word in by_count(words) if word not in taken]
    return {piece: i for i, piece in enumerate(pieces[:vocab_size])}


def load_pretrained(path: str):
    """A local transformers tokenizer directory (no download); must be a fast tokenizer."""
    from transformers import AutoTokenizer

    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"data.tokenizer: tokenizer directory {directory} does not exist "
                                "(expected a folder written by tokenizer.save_pretrained)")
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    if not tokenizer.is_fast or tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError(f"data.tokenizer: {directory} must hold a fast tokenizer with mask and pad tokens "
                         "(whole-word masking needs word_ids())")
    return tokenizer


def text_vocab(tokenizer) -> TextVocab:
    """What the model needs to know of a tokenizer."""
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return TextVocab(size=len(tokenizer), pad_id=tokenizer.pad_token_id, mask_id=tokenizer.mask_token_id,
                     cls_id=cls_id, sep_id=sep_id, special_ids=tuple(sorted(set(tokenizer.all_special_ids))))
