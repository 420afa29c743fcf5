"""InstructPix2Pix (nb 09): the text-to-image UNet widened to read the source latent, fine-tuned on edit triples.   [IP2P, nb 09]"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from course_lib import instruct_pix2pix, models, shapesedit, text2image, training
from course_lib import vae as vae_lib
from course_lib.recipes.text_to_image import TextToImageRecipe

IP2P_TRAIN_CONFIG = training.TrainConfig(steps=4000, batch_size=64, lr=3e-4, lr_schedule="cosine", lr_warmup_steps=100,
                                         weight_decay=0.0, ema_decay=0.999, grad_clip=1.0, seed=0,
                                         checkpoint_every=500)
IP2P_EVAL_CASES = 100  # ShapesEdit development cases (shapesedit.DEV_SEED): the manifest's metrics, never the benchmark's


@dataclass(frozen=True)
class InstructPix2PixRecipe(TextToImageRecipe):
    """Diffusion loss on (target latent | source latent, instruction) triples with IP2P's joint text and image dropout."""

    dataset_size: int = instruct_pix2pix.DATASET_SIZE

    def build_model(self):
        return instruct_pix2pix.make_unet()

    def build_data(self):
        tokenizer, encoder = self.encoder()
        return instruct_pix2pix.pair_dataset(self.dataset_size, vae_lib.load_vae(device="cpu"), tokenizer, encoder,
                                             seed=self.data_seed)

    def loss_options(self) -> dict:
        null = text2image.null_condition(*self.encoder())["encoder_hidden_states"]
        return {"condition_dropout": functools.partial(instruct_pix2pix.conditioning_dropout, null_text=null)}

    def loss_record(self) -> dict:
        return {"condition_dropout": f"course_lib.instruct_pix2pix.conditioning_dropout, p={instruct_pix2pix.DROPOUT}"}

    def evaluate(self, model):
        device = models.model_device(model)
        tokenizer, encoder = text2image.load_text_encoder(device=device)
        parts = text2image.Parts(model.eval(), vae_lib.load_vae(device=device), tokenizer, encoder)
        result = shapesedit.evaluate(instruct_pix2pix.method(parts), shapesedit.cases(IP2P_EVAL_CASES, shapesedit.DEV_SEED),
                                     name="instruct_pix2pix")
        overall = result["summary"]["overall"]
        return {f"dev_{k}": round(overall[k], 4) for k in ("success", "scene_ok", "locked_psnr")}

    def to_dict(self) -> dict:
        return {**super().to_dict(),
                "init": "data/text2image, conv_in widened to 8 input channels with zero weights",
                "data": f"course_lib.instruct_pix2pix.pair_dataset({self.dataset_size}, seed={self.data_seed}) "
                        "('train' scenes; ShapesEdit draws 'test')"}


RECIPES = (
    InstructPix2PixRecipe(
        name="instruct_pix2pix",
        description=("InstructPix2Pix (Brooks et al. 2023): data/text2image's UNet2DConditionModel with conv_in widened to "
                     "z_t + the source image's VAE latent (8 channels, new weights zero), fine-tuned on shapes-world edit "
                     "triples with canonical instructions; text and image each dropped for 5 % of examples, both for 5 % (nb 09)."),
        config=IP2P_TRAIN_CONFIG, data_seed=0,
    ),
)
