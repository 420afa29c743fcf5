"""CLIP on the shapes world (nb 05): both towers trained ("clip"), and LiT, a locked image tower pretrained as a
supervised classifier of the scene's contents ("clip_lit").   [CLIP, LiT, nb 05]

The settings live with the concept: clip.CLIP_CONFIG (contrastive training) and clip.TOWER_CONFIG
(the LiT tower's pretraining).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from course_lib import clip, text, training
from course_lib.recipes.base import LoopRecipe, Trained


@dataclass(frozen=True)
class ContrastiveRecipe(LoopRecipe):
    """A CLIP recipe: the contrastive loss (clip.clip_loss) on fresh image-caption pairs with edited twins.

    The manifest also records the tokenizer's words (clip.load rebuilds the tokenizer from them) and
    the trainable parameters.
    """

    multi_positive: bool = True

    def tokenizer(self):
        """Return the course tokenizer the model reads (text.build_tokenizer())."""
        return text.build_tokenizer()

    def build_model(self):
        return clip.make_clip(self.tokenizer(), seed=self.config.seed)

    def build_data(self):
        return clip.caption_batches(self.tokenizer(), self.config.batch_size, twins=True)

    def loss_fn(self):
        return functools.partial(clip.clip_loss, multi_positive=self.multi_positive)

    def run_record(self, model, state) -> dict:
        return {**super().run_record(model, state), "trainable_parameters": clip.num_trainable(model)}

    def evaluate(self, model):
        return clip.evaluate(model.eval(), self.tokenizer())

    def to_dict(self) -> dict:
        return {**super().to_dict(), "loss": {"fn": "course_lib.clip.clip_loss", "multi_positive": self.multi_positive},
                "data": "course_lib.clip.caption_batches(twins=True): fresh 'train' scenes and edited twins",
                **clip.recipe_info(self.tokenizer())}


@dataclass(frozen=True)
class LiTRecipe(ContrastiveRecipe):
    """LiT: pretrain the image tower (clip.pretrain_image_tower with tower_config), lock it (clip.lit_model), train the
    text side; the manifest also records the tower's pretraining steps, time and accuracy."""

    tower_config: training.TrainConfig = field(default_factory=lambda: clip.TOWER_CONFIG)

    def locked_model(self, device=None) -> tuple:
        """Pretrain the image tower on `device` and return (the LiT CLIPModel around it, locked; the pretraining's figures)."""
        tower, pretraining = clip.pretrain_image_tower(self.tower_config, device=device, progress=False)
        return clip.lit_model(tower, self.tokenizer(), seed=self.config.seed), pretraining

    def build_model(self):
        return self.locked_model()[0]

    def train(self, config, *, device, state_dir=None, progress=True) -> Trained:
        model, pretraining = self.locked_model(device)
        trained = self.fit(model, config, device=device, state_dir=state_dir, progress=progress)
        return Trained(trained.model, trained.state, {**trained.record, "image_tower_pretraining": pretraining})


RECIPES = (
    ContrastiveRecipe(
        name="clip",
        description=("Tiny CLIPModel (course_lib.clip TEXT_CONFIG / VISION_CONFIG, both towers trained from scratch) on "
                     "shapes-world scenes and captions, multi-positive contrastive loss, batches of scenes and edited "
                     "twins; its text tower is the text encoder of nb 06."),
        config=clip.CLIP_CONFIG, data_seed=clip.CLIP_CONFIG.seed,
    ),
    LiTRecipe(
        name="clip_lit",
        description=("LiT: the image tower of a CLIPModel pretrained as a supervised classifier of each cell's colour and "
                     "shape and the background, then locked (identity image projection); only the text tower, text "
                     "projection and temperature are trained, with the same loss, data and steps as 'clip'."),
        config=clip.CLIP_CONFIG, data_seed=clip.CLIP_CONFIG.seed,
    ),
)
