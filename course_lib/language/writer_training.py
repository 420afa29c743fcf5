"""Training the writer with the course's one loop (training.train); the prompt_writer recipe calls train_writer.   [nb 09]

The shipped writer (data/prompt_writer) is rebuilt by the recipe: train_writer(), evaluate(writer),
then save_writer(writer, folder, **manifest).
"""

from __future__ import annotations

from pathlib import Path

from course_lib import training
from course_lib.language.dataset import examples
from course_lib.language.model import build_tokenizer, encode_examples, lm_loss, make_model
from course_lib.language.reader import model_input, slip_kept
from course_lib.language.writer import PromptWriter
from course_lib.validation import check_int

UNSUPPORTED_ANSWER = "unsupported:"  # the answer of an example about a word the world lacks (reader.refusal_answer)

TRAIN_EXAMPLES = 60_000
TRAIN_CONFIG = training.TrainConfig(steps=4000, batch_size=48, lr=2e-3, lr_schedule="cosine", lr_warmup_steps=200,
                                    weight_decay=0.01, ema_decay=0.0, grad_clip=1.0, seed=0, checkpoint_every=1000)


def training_pairs(train) -> list[tuple[str, str]]:
    """Return (what the model reads, answer) for (kind, input, answer) examples: each input through the reader.   [nb 09]

    The model is trained on the reader's first pass (model_input(..., second_pass=False)): the
    world's words in the orders the templates type them, so that it learns to compose from any
    order; at use, the second pass gives it the training captions' order wherever the words pin the
    objects down. (Trained on the second pass's text instead, it meets free orders only at use, and
    the dev, final and final2 sets' requests drop 4.6 to 5.3 points exact: benchmarks/bench_writer.py, 2026-12-07.)
    An example the reader refuses (an unsupported word, a count above shapes.MAX_OBJECTS) never
    reaches the model, so it is left out, and so is an unsupported word's example the reader lets
    through (a typo that made the word a common English one, "pink" typed "pint": what the model
    reads no longer holds the word its answer names): the model learns the refusals only the scene can decide
    (too many objects in all, not in the scene, ambiguous, contradiction). So is an example whose typo spelled
    another common English word that the reader keeps as typed ("bell" for "ball", "lift" for "left":
    reader.slip_kept; 63 of the 60,000): trained on it, the model would learn to name what it cannot read.
    """
    pairs = []
    for _, prompt, answer in train:
        text, refused = model_input(prompt, second_pass=False)
        if refused is None and not answer.startswith(UNSUPPORTED_ANSWER) and not slip_kept(prompt):
            pairs.append((text, answer))
    return pairs


FINGERPRINT_EXAMPLES = 3000  # the first training examples, whose reading fingerprints the reader a writer was trained with


def training_data_fingerprint(num_examples: int = FINGERPRINT_EXAMPLES, seed: int = 0) -> str:
    """Return the SHA-256 of training_pairs(examples(num_examples, seed, "train")): what the reader made of the data.   [nb 09]

    The model is trained on what the reader leaves, so a change to the reader changes the training
    data, and the shipped weights are reproducible only if the writer is retrained
    (`make reproduce NAME=prompt_writer`). The recipe records this fingerprint in the manifest; the
    tests recompute it (the first examples are the same whatever num_examples the recipe draws).
    """
    import hashlib
    import json

    num_examples = check_int(num_examples, "num_examples", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    pairs = training_pairs(examples(num_examples, seed, "train"))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def train_writer(*, steps: int | None = None, num_examples: int = TRAIN_EXAMPLES, seed: int = 0, progress: bool = True,
                 state_dir=None) -> tuple[PromptWriter, training.TrainState]:
    """Train the tokenizer and the writer from scratch on `num_examples` training examples; return (writer, state).   [nb 09]

    steps: TRAIN_CONFIG's 4,000 when None. state_dir: a folder to checkpoint the run in (resumed when it holds one).
    """
    if steps is not None:
        steps = check_int(steps, "steps", minimum=1)
    num_examples = check_int(num_examples, "num_examples", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    pairs = training_pairs(examples(num_examples, seed, "train"))
    tokenizer = build_tokenizer([p for p, _ in pairs] + [a for _, a in pairs])
    data = encode_examples(tokenizer, pairs)
    model = make_model(tokenizer, seed)
    config = TRAIN_CONFIG if steps is None else training.TrainConfig.from_dict({**TRAIN_CONFIG.to_dict(), "steps": steps})
    resume = state_dir if state_dir is not None and (Path(state_dir) / "trainer_state.json").is_file() else None
    state = training.train(model, data, lm_loss, config, device="cpu", progress=progress, checkpoint_dir=state_dir,
                           resume=resume)
    return PromptWriter(state.sampling_model.eval(), tokenizer), state
