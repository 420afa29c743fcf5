"""Text to image with flows (nb 10): an SD3Transformer2DModel on vae16's latents, trained by rectified flow.   [SD3, nb 10]"""

from __future__ import annotations

from dataclasses import dataclass

from course_lib import flow_text2image, training
from course_lib.recipes.base import LoopRecipe

FLOW_DATASET_SIZE = 60_000  # captioned 'train' scenes, encoded once at the start (latents drawn from the posterior)
FLOW_TRAIN_CONFIG = training.TrainConfig(steps=6000, batch_size=64, lr=5e-4, lr_schedule="cosine", lr_warmup_steps=200,
                                         weight_decay=0.0, ema_decay=0.999, grad_clip=1.0, seed=0,
                                         checkpoint_every=500)


@dataclass(frozen=True)
class FlowTransformerRecipe(LoopRecipe):
    """flow.flow_matching_loss (SD3's logit-normal noise levels, the time shift) on (latent, both towers' embeddings)."""

    dataset_size: int = FLOW_DATASET_SIZE

    def system(self, model=None):
        """Return the flow system the model trains in: its VAE and text towers on the CPU (a fresh transformer if none)."""
        return flow_text2image.make_system(flow_text2image.make_transformer() if model is None else model, device="cpu")

    def build_model(self):
        return flow_text2image.make_transformer(seed=self.config.seed)

    def build_data(self):
        return flow_text2image.latent_dataset(self.dataset_size, self.system(), seed=self.data_seed)

    def loss_fn(self):
        return flow_text2image.loss_fn(flow_text2image.null_condition(self.system()))

    def evaluate(self, model):
        return flow_text2image.evaluate(model)

    def to_dict(self) -> dict:
        return {**super().to_dict(),
                "loss": {"fn": "course_lib.flow.flow_matching_loss", "density": "logit_normal",
                         "shift": flow_text2image.SHIFT, "cond_dropout": flow_text2image.CAPTION_DROPOUT,
                         "null_cond": 'the condition of ""'},
                "data": f"course_lib.flow_text2image.latent_dataset({self.dataset_size}, seed={self.data_seed})",
                "text_encoders": [f"data/{n} cut to {k} layer(s), with projection, frozen"
                                  for n, k in flow_text2image.TEXT_TOWERS],
                "vae": f"data/{flow_text2image.VAE}", "max_sequence_length": flow_text2image.MAX_SEQUENCE_LENGTH}


RECIPES = (
    FlowTransformerRecipe(
        name=flow_text2image.NAME,
        description=("SD3Transformer2DModel (course_lib.flow_text2image.TRANSFORMER_CONFIG, an MMDiT with 2x2 patches and "
                     "joint attention, adaLN-zero initialised) predicting the velocity eps - x0 on vae16's 4x16x16 "
                     "latents, conditioned on data/clip's and data/clip_lit's frozen text towers (penultimate states "
                     "and pooled vectors, as SD3 reads its two CLIP encoders; no T5); rectified flow with SD3's "
                     "logit-normal noise levels and time shift; captions dropped to the empty prompt with probability "
                     "0.1 for classifier-free guidance (nb 10)."),
        config=FLOW_TRAIN_CONFIG, data_seed=0,
    ),
)
