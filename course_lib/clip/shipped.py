"""Training settings, saving and loading the shipped CLIP models (data/clip, data/clip_lit).   [nb 05-06]"""

from __future__ import annotations

import functools

from course_lib import checkpoints, text, training
from course_lib.clip.data import caption_batches
from course_lib.clip.lit import check_train_config
from course_lib.clip.loss import clip_loss
from course_lib.clip.model import check_clip_model
from course_lib.validation import CourseInputError

# Contrastive training, both towers ("clip") or LiT's text side ("clip_lit"): 5,000 steps of 64
# scenes and their 64 edited twins. The recipes "clip" and "clip_lit" train with it.
CLIP_CONFIG = training.TrainConfig(steps=5000, batch_size=128, lr=3e-3, lr_schedule="cosine", lr_warmup_steps=200,
                                   weight_decay=0.1, ema_decay=0.0, grad_clip=1.0, seed=0, checkpoint_every=500)


def train_clip(model, tokenizer, config: training.TrainConfig = CLIP_CONFIG, *, multi_positive: bool = True,
               twins: bool = True, device=None, progress: bool | None = True, callback=None) -> training.TrainState:
    """Train a CLIPModel (both towers, or LiT's text side) on fresh shapes-world pairs with training.train.   [nb 05]"""
    check_clip_model(model)
    check_train_config(config)
    loss_fn = functools.partial(clip_loss, multi_positive=multi_positive)
    return training.train(model, caption_batches(tokenizer, config.batch_size, twins=twins), loss_fn, config,
                          device=device, progress=progress, callback=callback)


def recipe_info(tokenizer) -> dict:
    """Return what a CLIP manifest records about the tokenizer: its words (to rebuild it) and max length."""
    text.check_tokenizer(tokenizer)
    vocab = tokenizer.get_vocab()
    words = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in text.SPECIAL_TOKENS]
    return {"tokenizer": {"class": "transformers.PreTrainedTokenizerFast (tokenizers WordLevel)",
                          "words": words, "max_length": tokenizer.model_max_length,
                          "special_tokens": dict(zip(text.SPECIAL_TOKENS, range(len(text.SPECIAL_TOKENS))))}}


def load(name: str = "clip", device=None):
    """Load a shipped CLIP checkpoint (hashes verified): return (CLIPModel in eval mode, tokenizer).   [nb 05-06]

    The tokenizer is rebuilt from the words its manifest records, so it always matches the weights.
    name: a checkpoint name (data/NAME) or a folder path (checkpoints.checkpoint_dir's rule).
    """
    manifest = checkpoints.read_manifest(name)
    info = manifest.get("recipe", {}).get("tokenizer")
    if manifest.get("class") != "transformers.CLIPModel" or info is None:
        raise CourseInputError(f"{name!r} is not a CLIP checkpoint with its tokenizer (its manifest names "
                               f"{manifest.get('class')!r}{'' if info else ' and records no tokenizer'}); "
                               f"use clip.load('clip') or clip.load('clip_lit'), or rebuild with "
                               f"`python -m course_lib.recipes {manifest.get('name', name)}`.")
    model = checkpoints.load(name, device=device)
    tokenizer = text.build_tokenizer(info["words"], info["max_length"])
    if len(tokenizer) != model.config.text_config.vocab_size:
        raise CourseInputError(f"the tokenizer of {name!r} has {len(tokenizer)} tokens but the model "
                               f"{model.config.text_config.vocab_size}; rebuild with `python -m course_lib.recipes {name}`.")
    return model, tokenizer


def shipped_figures(name: str = "clip") -> dict:
    """Return a shipped checkpoint's training record: steps, wall time (s), trainable parameters, metrics, pretraining."""
    manifest = checkpoints.read_manifest(name)
    recipe = manifest.get("recipe", {})
    return {"steps": manifest.get("steps"), "wall_time_s": manifest.get("wall_time_s"),
            "metrics": manifest.get("metrics", {}), "trainable_parameters": recipe.get("trainable_parameters"),
            "image_tower_pretraining": recipe.get("image_tower_pretraining")}
