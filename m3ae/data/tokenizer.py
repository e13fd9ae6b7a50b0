"""The text tokenizer: a WordPiece vocabulary trained on the pre-training corpus
(cached in the transformers format), or a local pretrained tokenizer directory.

Whole-word masking needs word boundaries: `encoding.word_ids()` of a fast
tokenizer gives them, for ours and for any pretrained fast tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from m3ae.batch import TextVocab
from m3ae.data.cache import cached_entry, entry_name

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZER_VERSION = 1


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
    """Train a lower-casing BERT-style WordPiece tokenizer on an iterable of texts."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size,
                                                            special_tokens=list(SPECIAL_TOKENS)))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


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
