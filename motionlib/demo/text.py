"""Text side of the shapes demo model: a word-level tokenizer and a learned word-embedding encoder.

The tokenizer is built locally (no download) over the domain vocabulary: lowercase, punctuation
stripped, one id per word, ``<pad>`` = 0, ``</s>`` appended. Words outside the vocabulary map to
``<unk>``; calling the tokenizer (or ``warn_unknown``) then emits a ``UserWarning`` naming them.
"""

from __future__ import annotations

import re
import warnings

import torch
from transformers import PreTrainedTokenizerFast

from .data import BACKGROUNDS, COLORS, SHAPE_WORDS

SPECIALS = ("<pad>", "</s>", "<unk>")
WORDS = ("a", "the", "on", *COLORS, *SHAPE_WORDS, *BACKGROUNDS, "background")
VOCAB: dict[str, int] = {w: i for i, w in enumerate((*SPECIALS, *dict.fromkeys(WORDS)))}
_PUNCT = r"[^a-z0-9\s]"


def normalize(prompt: str) -> list[str]:
    """The words the tokenizer sees: lowercased, punctuation removed."""
    return re.sub(_PUNCT, " ", prompt.lower()).split()


def unknown_words(prompt: str) -> list[str]:
    return [w for w in normalize(prompt) if w not in VOCAB]


def warn_unknown(prompt: str) -> list[str]:
    """Warn (never raise) about words the shapes model has no embedding for; returns them."""
    unknown = unknown_words(prompt)
    if unknown:
        known = ", ".join(w for w in VOCAB if w not in SPECIALS)
        warnings.warn(f"the shapes model does not know the word(s) {', '.join(map(repr, unknown))} "
                      f"in prompt {prompt!r}; they are read as <unk>. Known words: {known}",
                      UserWarning, stacklevel=3)
    return unknown


class ShapesTokenizer(PreTrainedTokenizerFast):
    """PreTrainedTokenizerFast that warns about out-of-vocabulary words when called."""

    def __call__(self, text=None, *args, **kwargs):
        texts = [text] if isinstance(text, str) else (text or [])
        for t in texts:
            if isinstance(t, str):
                warn_unknown(t)
        return super().__call__(text, *args, **kwargs)


def build_tokenizer(text_len: int) -> ShapesTokenizer:
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(Regex(_PUNCT), " ")])
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", VOCAB["</s>"])])
    return ShapesTokenizer(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           model_max_length=text_len, padding_side="right")


class WordEmbeddingEncoder(torch.nn.Module):
    """ids [B, L] -> (embeddings [B, L, D],): a learned word table plus a learned position table."""

    def __init__(self, vocab_size: int = len(VOCAB), dim: int = 64, max_len: int = 12):
        super().__init__()
        self.config = type("Cfg", (), {"vocab_size": vocab_size, "d_model": dim, "max_len": max_len})()
        self.embed = torch.nn.Embedding(vocab_size, dim)
        self.pos = torch.nn.Parameter(torch.zeros(max_len, dim))
        torch.nn.init.normal_(self.embed.weight, std=1.0)
        torch.nn.init.normal_(self.pos, std=0.1)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    def forward(self, input_ids: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor]:
        n = input_ids.shape[1]
        if n > self.pos.shape[0]:
            raise ValueError(f"{n} text tokens but the encoder has {self.pos.shape[0]} positions")
        return (self.embed(input_ids) + self.pos[:n],)
