"""How every shipped checkpoint was trained: one recipe each, one command to rebuild it.   [notebook 03]

    python -m course_lib.recipes --list                 # the recipes and what they train
    python -m course_lib.recipes ddpm_moons             # retrain data/ddpm_moons/ from scratch (+ manifest)
    python -m course_lib.recipes ddpm_digits --steps 200 --out /tmp/digits_short    # a shortened run elsewhere
    make reproduce NAME=prompt_writer                   # the same, through the Makefile

A recipe says how to train its model (for most: build the model, the data and the loss, and train
with training.train, the course's one loop), how to measure it and what its manifest records;
`run` trains it, measures it and saves it with checkpoints.save_pretrained, so the manifest holds
the config, this command, the data seed, the steps, the wall time and the metrics. Training is
deterministic for a given seed on a given device and number of CPU threads; the manifest records both.

The package, one file per family of recipes:

    base.py               Recipe, LoopRecipe (training.train), DiffusionRecipe (diffusion_loss), Trained
    ddpm.py               ddpm_moons, ddpm_digits, ddpm_digits_cond          (nb 03, 06)
    autoencoder.py        vae                                                (nb 04)
    contrastive.py        clip, clip_lit                                     (nb 05)
    text_to_image.py      text2image                                         (nb 06)
    instruction_edits.py  instruct_pix2pix                                   (nb 09)
    prompt_writer.py      prompt_writer                                      (nb 09)
    registry.py           FAMILIES, RECIPES, get: the registry, built once from the families
    runner.py             run (train, measure, save) and the command line

A new family is one new file: subclass LoopRecipe (or DiffusionRecipe, or Recipe for a model trained
its own way), override what differs, end the file with RECIPES = (YourRecipe(name=..., ...),), and
add the module to registry.FAMILIES.
"""

from course_lib.recipes.autoencoder import (VAE_KL_SWEEP, VAE_KL_WEIGHT, VAE_SCALING_IMAGES, VAE_SWEEP_CONFIG,
                                            VAE_TRAIN_CONFIG, VAERecipe, finish_vae, vae_kl_sweep)
from course_lib.recipes.base import DiffusionRecipe, LoopRecipe, Recipe, Trained, model_config
from course_lib.recipes.contrastive import ContrastiveRecipe, LiTRecipe
from course_lib.recipes.ddpm import (DIGITS_COND_CONFIG, DIGITS_CONFIG, DIGITS_LABEL_DROPOUT, MOONS_CONFIG,
                                     MOONS_TRAIN_POINTS, SCHEDULE, DigitsRecipe, MoonsRecipe, digits_data,
                                     evaluate_2d, evaluate_digits, moons_data)
from course_lib.recipes.instruction_edits import IP2P_EVAL_CASES, IP2P_TRAIN_CONFIG, InstructPix2PixRecipe
from course_lib.recipes.prompt_writer import PromptWriterRecipe
from course_lib.recipes.registry import FAMILIES, RECIPES, get
from course_lib.recipes.runner import main, run
from course_lib.recipes.text_to_image import T2I_DATASET_SIZE, T2I_TRAIN_CONFIG, TextToImageRecipe

__all__ = [
    "Recipe", "LoopRecipe", "DiffusionRecipe", "Trained", "model_config",
    "SCHEDULE", "MOONS_TRAIN_POINTS", "MOONS_CONFIG", "moons_data", "evaluate_2d", "MoonsRecipe",
    "DIGITS_LABEL_DROPOUT", "DIGITS_CONFIG", "DIGITS_COND_CONFIG", "digits_data", "evaluate_digits", "DigitsRecipe",
    "VAE_KL_WEIGHT", "VAE_TRAIN_CONFIG", "VAE_KL_SWEEP", "VAE_SWEEP_CONFIG", "VAE_SCALING_IMAGES", "vae_kl_sweep",
    "finish_vae", "VAERecipe",
    "ContrastiveRecipe", "LiTRecipe",
    "T2I_DATASET_SIZE", "T2I_TRAIN_CONFIG", "TextToImageRecipe",
    "IP2P_TRAIN_CONFIG", "IP2P_EVAL_CASES", "InstructPix2PixRecipe",
    "PromptWriterRecipe",
    "FAMILIES", "RECIPES", "get", "run", "main",
]
