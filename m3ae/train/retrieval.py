"""Image-text retrieval with the ITM head as the score (the paper's protocol).

Training: for each image of a batch, its own text and `negatives` texts of
other images, scored by the ITM head; cross-entropy over the 1 + k candidates.
Evaluation: every image against every text. Each image and each text goes
through its unimodal encoder once; only the fusion stack and the ITM head run
per pair, in chunks of `PAIR_CHUNK` pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from m3ae.train.evaluate import assign_rows, pad_tokens

PAIR_CHUNK = 1024  # image-text pairs per fusion call when scoring a split


def itm_score(model, image_tokens: torch.Tensor, text_tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Match score of aligned pairs: ITM log-odds (matched - mismatched logit).

    image_tokens [P, 1+N, Dv], text_tokens [P, T, Dt], attention_mask [P, T] -> [P]."""
    logits = model.itm_head(model.pool(model.fuse(image_tokens, text_tokens, attention_mask)))
    return logits[:, 1] - logits[:, 0]


def _image_ids(batch) -> torch.Tensor:
    return batch.image_ids if batch.image_ids is not None else torch.arange(len(batch), device=batch.images.device)


def in_batch_rank_loss(model, batch, negatives: int) -> torch.Tensor:
    """Cross-entropy of each image's own text against up to `negatives` texts of other images."""
    images = model.encode_image(batch.images)  # [B, 1+N, Dv]
    texts = model.encode_text(batch.input_ids, batch.attention_mask)  # [B, T, Dt]
    ids = _image_ids(batch)
    b = len(batch)
    candidates = ids[None, :] != ids[:, None]  # [B, B]: text j describes another image than i
    k = min(negatives, int(candidates.sum(dim=1).min()))
    if k < 1:
        raise ValueError("retrieval fine-tuning needs at least two different images in every batch")
    noise = torch.rand(b, b, device=images.device).masked_fill(~candidates, -1.0)
    text_index = torch.cat([torch.arange(b, device=images.device)[:, None], noise.topk(k, dim=1).indices], 1)
    image_index = torch.arange(b, device=images.device)[:, None].expand(-1, k + 1)
    flat_t, flat_i = text_index.reshape(-1), image_index.reshape(-1)
    scores = itm_score(model, images[flat_i], texts[flat_t], batch.attention_mask[flat_t]).view(b, k + 1)
    return F.cross_entropy(scores.float(), torch.zeros(b, dtype=torch.long, device=scores.device))


@torch.no_grad()
def encode_split(model, batches) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unimodal encodings of a split, each distinct image once.

    -> image_tokens [I, 1+N, Dv], text_tokens [T, L, Dt], attention_mask [T, L],
       text_image [T] (row of each text's image)."""
    images, texts, masks, text_image = [], [], [], []
    row_of: dict[int, int] = {}  # image id -> row in the image encodings
    for batch in batches:
        fresh = assign_rows(_image_ids(batch).tolist(), row_of, text_image)  # images not encoded yet
        if fresh:
            images.append(model.encode_image(batch.images[fresh]))
        texts.append(model.encode_text(batch.input_ids, batch.attention_mask))
        masks.append(batch.attention_mask)
    return torch.cat(images), pad_tokens(texts), pad_tokens(masks), torch.tensor(text_image)


@torch.no_grad()
def score_matrix(model, batches, chunk: int = PAIR_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """ITM scores of every image with every text of a split.

    -> scores [I, T], text_image [T] (see metrics.retrieval_recall)."""
    image_tokens, text_tokens, attention_mask, text_image = encode_split(model, batches)
    n_images, n_texts = image_tokens.shape[0], text_tokens.shape[0]
    scores = torch.empty(n_images * n_texts)
    for start in range(0, n_images * n_texts, chunk):
        pair = torch.arange(start, min(start + chunk, n_images * n_texts))
        i, t = pair // n_texts, pair % n_texts
        scores[pair] = itm_score(model, image_tokens[i], text_tokens[t], attention_mask[t]).float().cpu()
    return scores.view(n_images, n_texts), text_image
