"""Text to image (nb 06): a UNet2DConditionModel on the shapes VAE's latents, reading data/clip's text tower.   [LDM, nb 06]"""

from __future__ import annotations

from dataclasses import dataclass, field

from course_lib import schedules, text2image, training
from course_lib import vae as vae_lib
from course_lib.recipes.base import DiffusionRecipe

T2I_DATASET_SIZE = 60_000  # captioned 'train' scenes, encoded once at the start (latents drawn from the posterior)
T2I_TRAIN_CONFIG = training.TrainConfig(steps=6000, batch_size=64, lr=5e-4, lr_schedule="cosine", lr_warmup_steps=200,
                                        weight_decay=0.0, ema_decay=0.999, grad_clip=1.0, seed=0,
                                        checkpoint_every=500)


@dataclass(frozen=True)
class TextToImageRecipe(DiffusionRecipe):
    """Diffusion loss on (latent, prompt embedding) pairs, captions dropped to "" for classifier-free guidance."""

    schedule: schedules.NoiseSchedule = field(default_factory=lambda: text2image.SCHEDULE)
    dataset_size: int = T2I_DATASET_SIZE

    def encoder(self) -> tuple:
        """Return (tokenizer, frozen text encoder) the UNet reads: text2image.load_text_encoder on the CPU."""
        return text2image.load_text_encoder(device="cpu")

    def build_model(self):
        return text2image.make_unet(seed=self.config.seed)

    def build_data(self):
        tokenizer, encoder = self.encoder()
        return text2image.latent_dataset(self.dataset_size, vae_lib.load_vae(device="cpu"), tokenizer, encoder,
                                         seed=self.data_seed)

    def loss_options(self) -> dict:
        return {"cond_dropout": text2image.CAPTION_DROPOUT, "null_cond": text2image.null_condition(*self.encoder())}

    def loss_record(self) -> dict:
        return {"cond_dropout": text2image.CAPTION_DROPOUT, "null_cond": 'encoder_hidden_states of ""'}

    def evaluate(self, model):
        return text2image.evaluate(model)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "data": f"course_lib.text2image.latent_dataset({self.dataset_size}, seed={self.data_seed})",
                "text_encoder": f"data/{text2image.TEXT_ENCODER} (text tower cut to {text2image.TEXT_LAYERS} layers, frozen)",
                "vae": "data/vae"}


RECIPES = (
    TextToImageRecipe(
        name="text2image",
        description=("UNet2DConditionModel (course_lib.text2image.UNET_CONFIG) eps-predictor on the shapes VAE's 4x8x8 "
                     "latents, cross-attending to data/clip's frozen text tower read at its embedding layer; SD's "
                     "scaled_linear schedule; captions dropped to the empty prompt with probability 0.1 for "
                     "classifier-free guidance (nb 06)."),
        config=T2I_TRAIN_CONFIG, data_seed=0,
    ),
)
