"""The prompt writer (nb 09): a tiny GPT2LMHeadModel and its byte-level BPE tokenizer, trained from scratch on
requests, instructions and refusals of the shapes world.   [GPT-2, nb 09]

Everything happens in course_lib.language's public functions: train_writer (tokenizer, data read by
the reader, model and the course's one training loop, on the CPU), evaluate (exact-match accuracy per kind) and
save_writer (the model, its tokenizer and the manifest in one folder).
"""

from __future__ import annotations

from dataclasses import dataclass

from course_lib import language
from course_lib.recipes.base import Recipe, Trained


@dataclass(frozen=True)
class PromptWriterRecipe(Recipe):
    """The writer's recipe: language.train_writer on num_examples examples with the recipe's step count.

    Its TrainConfig is language.TRAIN_CONFIG (train_writer's); only the step count can be changed.
    """

    num_examples: int = language.TRAIN_EXAMPLES

    def train(self, config, *, device, state_dir=None, progress=True) -> Trained:
        writer, state = language.train_writer(steps=config.steps, num_examples=self.num_examples, seed=self.data_seed,
                                              progress=progress, state_dir=state_dir)
        return Trained(writer, state, {"device": "cpu",  # train_writer trains on the CPU, whatever the machine has
                                       "vocab_size": len(writer.tokenizer),
                                       "reader_fingerprint": language.training_data_fingerprint(seed=self.data_seed),
                                       "losses_every_50": [round(x, 4) for x in state.losses[::50]]})

    def evaluate(self, model) -> dict:
        return language.evaluate(model)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "model_config": dict(language.WRITER_CONFIG),
                "data": f"course_lib.language.training_pairs(course_lib.language.examples({self.num_examples}, "
                        f"seed={self.data_seed}, split='train')): each input as the reader leaves it",
                "loss": "course_lib.language.lm_loss (cross-entropy on the answer tokens)"}

    def save(self, trained: Trained, folder, **manifest) -> dict:
        return language.save_writer(trained.model, folder, **manifest)


RECIPES = (
    PromptWriterRecipe(
        name="prompt_writer",
        description="GPT2LMHeadModel prompt writer and its byte-level BPE tokenizer (nb 09)",
        config=language.TRAIN_CONFIG, data_seed=0,
    ),
)
