"""The tokenizer and the model: a byte-level BPE tokenizer and a small GPT-2, trained on the answer tokens.   [nb 09]"""

from __future__ import annotations

import torch

from course_lib import models
from course_lib.language.words import END, PAD, SCENE, SEP, SPECIAL
from course_lib.validation import CourseInputError, check_int

MAX_LENGTH = 128  # positions: tokens of prompt + answer; the longest example is about 90 (tests/test_language.py)
MAX_NEW_TOKENS = 64
MAX_ANSWER_TOKENS = 40  # positions kept for the answer: the longest canonical answer is 29 tokens (tests/test_probes_language.py)
WRITER_CONFIG = dict(n_embd=128, n_layer=4, n_head=4, n_positions=MAX_LENGTH)
VOCAB_SIZE = 600
_BYTES = 256  # the byte-level alphabet every BPE vocabulary starts from


def build_tokenizer(texts, vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE tokenizer (GPT-2's kind) on the texts; return it as a PreTrainedTokenizerFast.   [nb 09]"""
    from tokenizers import Tokenizer, decoders, models as tok_models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise CourseInputError("texts must be a non-empty list of strings (the writer's inputs and answers).")
    vocab_size = check_int(vocab_size, "vocab_size", minimum=_BYTES + len(SPECIAL),
                           hint=f"the {_BYTES} bytes and {len(SPECIAL)} special tokens come first")
    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=END, bos_token=END,
                                   additional_special_tokens=[SEP, SCENE], padding_side="left")


def encode_examples(tokenizer, pairs, max_length: int = MAX_LENGTH) -> dict[str, torch.Tensor]:
    """Return {"input_ids", "attention_mask", "labels"} (N, max_length): prompt SEP answer END, loss on the answer only."""
    max_length = check_int(max_length, "max_length", minimum=2, hint="positions of prompt + answer")
    pairs = list(pairs)
    if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(t, str) for t in p)
                            for p in pairs):
        raise CourseInputError("pairs must be a non-empty list of (prompt, answer) strings.")
    ids, labels = [], []
    for prompt, answer in pairs:
        p = tokenizer.encode(prompt + SEP, add_special_tokens=False)
        a = tokenizer.encode(answer + END, add_special_tokens=False)
        if len(p) + len(a) > max_length:
            raise CourseInputError(f"an example of {len(p) + len(a)} tokens exceeds max_length={max_length}: {prompt!r}.")
        pad = max_length - len(p) - len(a)
        ids.append(p + a + [tokenizer.pad_token_id] * pad)
        labels.append([-100] * len(p) + a + [-100] * pad)
    ids = torch.tensor(ids)
    return {"input_ids": ids, "attention_mask": (ids != tokenizer.pad_token_id).long(), "labels": torch.tensor(labels)}


def make_model(tokenizer, seed: int = 0):
    """Return a fresh GPT2LMHeadModel of WRITER_CONFIG for the tokenizer (seeded weights)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    seed = check_int(seed, "seed", minimum=0)
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **WRITER_CONFIG)
    with models.seeded(seed):
        return GPT2LMHeadModel(config)


def lm_loss(model, batch, generator=None) -> torch.Tensor:
    """Return the next-token cross-entropy on the answer tokens (labels -100 elsewhere): the causal LM's loss.   [nb 09]

    The batch is cut to its longest example first (examples are padded on the right to MAX_LENGTH).
    generator is unused (the loss draws nothing); training.train passes one to every loss.
    """
    if not isinstance(batch, dict) or any(k not in batch for k in ("input_ids", "attention_mask", "labels")):
        raise CourseInputError("batch must be a dict with input_ids, attention_mask and labels (encode_examples' output).")
    length = int(batch["attention_mask"].sum(1).max())
    return model(**{k: v[:, :length] for k, v in batch.items()}).loss
