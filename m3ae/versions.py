"""Versions of the code whose output is cached: bump one when that output changes.

Each is part of the cache keys it affects (synthmed data, tokenizers, pre-trainings through
`m3ae.keys.pretrain_view`), so entries made by the older code are ignored, not reused. They live
here, apart from the code they version, so that computing a key (`ablate validate`) imports no torch.
"""

# m3ae/data/synthmed: the generated images, reports and questions
SYNTHMED_VERSION = 3
# m3ae/data/tokenizer.py. 2: a deterministic vocabulary (whole words by count, then characters)
# instead of `tokenizers`' WordPiece trainer, which breaks count ties in a per-process order
TOKENIZER_VERSION = 2
# m3ae/model/streams.py: what each named random stream draws (pre-training results change)
STREAMS_VERSION = 1
