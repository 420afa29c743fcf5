"""How every shipped checkpoint was trained: one recipe each, one command to rebuild it.   [notebook 03]

    python -m course_lib.recipes --list                 # the recipes and what they train
    python -m course_lib.recipes ddpm_moons             # retrain data/ddpm_moons/ from scratch (+ manifest)
    python -m course_lib.recipes ddpm_digits --steps 200 --out /tmp/digits_short    # a shortened run elsewhere

A recipe builds the model, the data (from its data seed), the loss and the TrainConfig, trains with
training.train (the course's one loop), measures the model and saves it with
checkpoints.save_pretrained, so the manifest holds the config, this command, the data seed, the
steps, the wall time and the metrics. Training is deterministic for a given seed on a given device
and number of CPU threads; the manifest records both.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from course_lib import checkpoints, data, environment, metrics, models, schedules, training

# The schedule every nb-03 model is trained and sampled with: DDPM's linear betas, 1,000 steps.
SCHEDULE = models.SCHEDULE  # the models' training schedule (course_lib.models)


@dataclass
class Recipe:
    """What a checkpoint is: how to build its model, data and loss, how long to train, how to measure it."""

    name: str
    description: str
    build_model: Callable[[], torch.nn.Module]
    build_data: Callable[[], object]
    loss_kwargs: dict
    config: training.TrainConfig
    data_seed: int
    evaluate: Callable[[torch.nn.Module], dict]
    schedule: schedules.NoiseSchedule = SCHEDULE

    def loss_fn(self) -> Callable:
        return functools.partial(training.diffusion_loss, alpha_bars=self.schedule.alpha_bars, **self.loss_kwargs)

    def to_dict(self) -> dict:
        """Return what the manifest records about the recipe besides the TrainConfig."""
        loss = {k: (v if not isinstance(v, dict) else {kk: int(vv) for kk, vv in v.items()})
                for k, v in self.loss_kwargs.items()}
        return {"description": self.description, "schedule": self.schedule.to_config(),
                "loss": {"fn": "course_lib.training.diffusion_loss", **loss}}


# ----------------------------------------------------------------------------------------------
# 2D: two moons
# ----------------------------------------------------------------------------------------------

MOONS_TRAIN_POINTS = 20_000


def moons_data(data_seed: int = 0) -> torch.Tensor:
    """Return the fixed two-moons training set of the ddpm_moons recipe: (20000, 2)."""
    return data.two_moons(MOONS_TRAIN_POINTS, generator=torch.Generator().manual_seed(data_seed))


def evaluate_2d(model: torch.nn.Module, draw_data=data.two_moons, num_samples: int = 2000, seed: int = 1) -> dict:
    """Return DDIM-50 and DDPM-1000 distance to data, and the data-data floor, for a 2D model (nb 03's figures)."""
    out = {}
    for sampler, steps in (("ddim", 50), ("ddpm", 1000)):
        x = models.generate(model, (num_samples, 2), SCHEDULE.alpha_bars, sampler=sampler, num_steps=steps,
                            generator=torch.Generator().manual_seed(seed)).x0
        out[f"energy_distance_{sampler}{steps}"] = metrics.distance_to_data(
            x, draw_data, generator=torch.Generator().manual_seed(seed + 1))
    out["energy_distance_floor"] = metrics.data_floor(draw_data, num_samples, generator=torch.Generator().manual_seed(seed + 2))
    out["ratio_ddim50_to_floor"] = out["energy_distance_ddim50"] / out["energy_distance_floor"]
    return {k: round(v, 6) for k, v in out.items()}


MOONS_CONFIG = training.TrainConfig(steps=4000, batch_size=512, lr=2e-3, lr_schedule="cosine", lr_warmup_steps=100,
                                    ema_decay=0.995, grad_clip=1.0, seed=0)

# ----------------------------------------------------------------------------------------------
# Digits: an unconditional UNet2DModel (nb 03), and a class-conditional one with label dropout (nb 06)
# ----------------------------------------------------------------------------------------------

DIGITS_LABEL_DROPOUT = 0.2


def digits_data(labels: bool = False):
    """Return the digits training set: all 1,797 images at 16x16 in [-1, 1], with their labels if asked."""
    x0, y = data.load_digits(16)
    return {"x0": x0, "class_labels": y} if labels else x0


def evaluate_digits(model: torch.nn.Module, num_samples: int = 500, seed: int = 1) -> dict:
    """Return the classifier figures of DDIM-50 samples: unconditional and, for a conditional model, null-label and per-class."""
    conditional = getattr(model.config, "num_class_embeds", None) is not None
    runs = [("uncond", {"class_labels": models.NULL_CLASS} if conditional else {})]
    if conditional:
        runs.append(("cond", {"class_labels": torch.arange(num_samples) % models.NUM_DIGIT_CLASSES}))
    out = {}
    for tag, condition in runs:
        x = models.generate(model, (num_samples, 1, 16, 16), SCHEDULE.alpha_bars, sampler="ddim", num_steps=50,
                            clip_sample=True, generator=torch.Generator().manual_seed(seed), **condition).x0
        figs = metrics.digit_figures(x)
        out[f"{tag}_confident_share"] = round(figs["confident_share"], 4)
        out[f"{tag}_tv_from_uniform"] = round(figs["tv_from_uniform"], 4)
        if tag == "cond":
            predicted, _ = metrics.classify_digits(x)
            out["cond_accuracy"] = round(float((predicted == condition["class_labels"]).double().mean()), 4)
    return out


DIGITS_CONFIG = training.TrainConfig(steps=2500, batch_size=128, lr=1e-3, lr_schedule="cosine", lr_warmup_steps=100,
                                     ema_decay=0.998, grad_clip=1.0, seed=0, checkpoint_every=250)
DIGITS_COND_CONFIG = training.TrainConfig(steps=2000, batch_size=128, lr=1e-3, lr_schedule="cosine",
                                          lr_warmup_steps=100, ema_decay=0.998, grad_clip=1.0, seed=0,
                                          checkpoint_every=250)

RECIPES: dict[str, Recipe] = {
    "ddpm_moons": Recipe(
        name="ddpm_moons",
        description="TimeMLP eps-predictor on two moons (20k fixed points), linear schedule, 1000 steps.",
        build_model=lambda: models.time_mlp(seed=0),
        build_data=lambda: moons_data(0),
        loss_kwargs={"prediction_type": "epsilon"},
        config=MOONS_CONFIG,
        data_seed=0,
        evaluate=evaluate_2d,
    ),
    "ddpm_digits": Recipe(
        name="ddpm_digits",
        description="Unconditional UNet2DModel eps-predictor on sklearn digits at 16x16 (nb 03).",
        build_model=lambda: models.digits_unet(seed=0),
        build_data=digits_data,
        loss_kwargs={"prediction_type": "epsilon"},
        config=DIGITS_CONFIG,
        data_seed=0,
        evaluate=evaluate_digits,
    ),
    "ddpm_digits_cond": Recipe(
        name="ddpm_digits_cond",
        description=("Class-conditional UNet2DModel (11 class embeddings: digits 0-9 and the null class 10) on "
                     "sklearn digits at 16x16, labels dropped to the null class with probability 0.2, for "
                     "classifier-free guidance (nb 06)."),
        build_model=lambda: models.digits_unet(seed=0, conditional=True),
        build_data=lambda: digits_data(labels=True),
        loss_kwargs={"prediction_type": "epsilon", "cond_dropout": DIGITS_LABEL_DROPOUT,
                     "null_cond": {"class_labels": models.NULL_CLASS}},
        config=DIGITS_COND_CONFIG,
        data_seed=0,
        evaluate=evaluate_digits,
    ),
}


def get(name: str) -> Recipe:
    """Return a recipe by name, or raise listing the known ones."""
    if name not in RECIPES:
        from course_lib.validation import CourseInputError

        raise CourseInputError(f"no recipe {name!r}; known recipes: {', '.join(RECIPES)}.")
    return RECIPES[name]


def run(name: str, *, steps: int | None = None, out: str | Path | None = None, device=None,
        state_dir: str | Path | None = None, progress: bool | None = True, evaluate: bool = True) -> dict:
    """Train recipe `name` from scratch (or resume from state_dir), measure it, save it with a manifest; return the manifest.

    steps overrides the recipe's step count (a shortened run; then `out` should not be data/NAME).
    state_dir: where the training state is saved every config.checkpoint_every steps, and resumed
    from if it already holds one.
    """
    recipe = get(name)
    config = recipe.config if steps is None else training.TrainConfig.from_dict({**recipe.config.to_dict(), "steps": steps})
    device = torch.device(device) if device is not None else environment.default_device()
    model = recipe.build_model()
    resume = None
    if state_dir is not None and (Path(state_dir) / "trainer_state.json").is_file():
        resume = state_dir
    started = time.perf_counter()
    state = training.train(model, recipe.build_data(), recipe.loss_fn(), config, device=device, resume=resume,
                           checkpoint_dir=state_dir, progress=progress)
    train_seconds = state.wall_time_s
    final = state.sampling_model
    figures = recipe.evaluate(final) if evaluate else {}
    figures["final_loss_mean_last_100"] = round(sum(state.losses[-100:]) / max(1, len(state.losses[-100:])), 5)
    command = (f"python -m course_lib.recipes {name}" + (f" --steps {steps}" if steps is not None else "")
               + f" --threads {torch.get_num_threads()}")  # bit-exact only with the same count: always say it
    extra = {**recipe.to_dict(), "device": str(device), "torch_threads": torch.get_num_threads(),
             "weights": "EMA" if state.ema_model is not None else "raw",
             "model_config": {k: (v if isinstance(v, (int, float, str, bool, list, tuple, dict, type(None))) else str(v))
                              for k, v in dict(final.config).items() if not k.startswith("_")} if hasattr(final, "config") else {}}
    manifest = checkpoints.save_pretrained(
        final, out if out is not None else name, name=name, command=command, train_config=config.to_dict(),
        recipe=extra, data_seed=recipe.data_seed, steps=state.step, wall_time_s=train_seconds, metrics=figures)
    manifest["total_seconds"] = round(time.perf_counter() - started, 1)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course_lib.recipes",
                                     description="Retrain a shipped checkpoint from scratch and rewrite data/NAME/.")
    parser.add_argument("name", nargs="?", help="recipe name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps (a shortened run)")
    parser.add_argument("--out", default=None, help="folder to write instead of data/NAME")
    parser.add_argument("--device", default=None, help="device (default: environment.default_device())")
    parser.add_argument("--state-dir", default=None, help="save the training state here, and resume from it if present")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); results are bit-exact only with the same count")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.list or not args.name:
        for recipe in RECIPES.values():
            print(f"{recipe.name:14s} {recipe.config.steps:6d} steps  {recipe.description}")
        return
    manifest = run(args.name, steps=args.steps, out=args.out, device=args.device, state_dir=args.state_dir,
                   progress=not args.no_progress)
    folder = checkpoints.checkpoint_dir(args.out if args.out else args.name)
    print(f"wrote {folder}: {manifest['steps']} steps, {manifest['wall_time_s']} s training, "
          f"{manifest['total_seconds']} s in all")
    for key, value in manifest["metrics"].items():
        print(f"  {key}: {value}")
    for rel, info in manifest["files"].items():
        print(f"  {rel}: {info['bytes']} bytes, sha256 {info['sha256']}")


# ----------------------------------------------------------------------------------------------
# The shapes VAE (nb 04): AutoencoderKL to 4x8x8 latents, reconstruction + KL, scaling factor in its config
# ----------------------------------------------------------------------------------------------

VAE_KL_WEIGHT = 1e-5
VAE_TRAIN_CONFIG = training.TrainConfig(steps=4000, batch_size=64, lr=1e-3, lr_schedule="cosine", lr_warmup_steps=100,
                                        ema_decay=0.999, grad_clip=1.0, seed=0, autocast="bfloat16",
                                        checkpoint_every=250)
# The reconstruction-KL trade-off nb 04 shows: three short runs that differ only in the KL weight.
# Only their measured numbers ship (in the manifest's metrics, key "kl_sweep"), not their weights.
VAE_KL_SWEEP = (1e-5, 1e-3, 1e-1)
VAE_SWEEP_CONFIG = training.TrainConfig(steps=200, batch_size=32, lr=1e-3, lr_schedule="cosine", lr_warmup_steps=50,
                                        ema_decay=0.0, grad_clip=1.0, seed=0, autocast="bfloat16")
VAE_SCALING_IMAGES = 4096  # 'train' scenes whose latents' std gives the scaling factor


@dataclass
class VAERecipe(Recipe):
    """A recipe whose loss is the VAE's reconstruction + KL (course_lib.vae.vae_loss) instead of the diffusion loss."""

    def loss_fn(self) -> Callable:
        from course_lib import vae as vae_lib

        return functools.partial(vae_lib.vae_loss, **self.loss_kwargs)

    def to_dict(self) -> dict:
        return {"description": self.description, "loss": {"fn": "course_lib.vae.vae_loss", **self.loss_kwargs}}


def _prior_samples_readable(model: torch.nn.Module, num: int = 256, seed: int = 0) -> float:
    """Return the share of z ~ N(0, I) (unscaled, the VAE's prior) that decode to a scene the shapes judge can read."""
    from course_lib import shapes
    from course_lib import vae as vae_lib

    z = torch.randn((num, *vae_lib.latent_shape(model)), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = model.decode(z.to(models.model_device(model))).sample.float().cpu().clamp(-1, 1)
    found = [shapes.read_scene(image) for image in images]
    return sum(s is not None and 1 <= len(s.objects) <= shapes.MAX_OBJECTS for s in found) / num


def vae_kl_sweep(device=None) -> list[dict]:
    """Train one short VAE per weight in VAE_KL_SWEEP (VAE_SWEEP_CONFIG) and return their figures (nb 04's table)."""
    from course_lib import vae as vae_lib

    rows = []
    for kl_weight in VAE_KL_SWEEP:
        state = training.train(vae_lib.make_vae(seed=0), vae_lib.vae_batches(VAE_SWEEP_CONFIG.batch_size),
                               functools.partial(vae_lib.vae_loss, kl_weight=kl_weight), VAE_SWEEP_CONFIG,
                               device=device, progress=False)
        model = state.sampling_model.eval()
        figures = vae_lib.measure(model, num_images=256)
        rows.append({"kl_weight": kl_weight, "steps": state.step, "psnr_test": figures["psnr_test"],
                     "kl_per_latent": figures["kl_per_latent"], "latent_std": figures["latent_std"],
                     "posterior_std_mean": figures["posterior_std_mean"],
                     "prior_samples_readable": round(_prior_samples_readable(model), 4),
                     "wall_time_s": round(state.wall_time_s, 1)})
    return rows


def finish_vae(model: torch.nn.Module) -> dict:
    """Store the scaling factor in the config, halve the weights to float16 (what ships), measure; run the KL sweep.

    The figures are measured on the shipped weights (float16, loaded back as float32), so the
    manifest's PSNR is the one a learner gets; psnr_test_float32 is before halving.
    """
    import copy

    from course_lib import shapes
    from course_lib import vae as vae_lib

    model.eval()
    device = models.model_device(model)
    figures = {"psnr_test_float32": vae_lib.measure(model)["psnr_test"]}
    model.half()
    shipped = copy.deepcopy(model).float()
    images = shapes.render(shapes.sample_scenes(VAE_SCALING_IMAGES, seed=1, split="train"))
    scaling_factor = vae_lib.compute_scaling_factor(shipped, images.to(device), generator=torch.Generator(device).manual_seed(0))
    for m in (model, shipped):
        vae_lib.set_scaling_factor(m, round(scaling_factor, 5))
    figures.update(vae_lib.measure(shipped))
    figures["scaling_factor"] = round(scaling_factor, 5)
    figures["prior_samples_readable"] = round(_prior_samples_readable(shipped), 4)
    figures["kl_sweep"] = vae_kl_sweep(device)
    return figures


def _vae_model():
    from course_lib import vae as vae_lib

    return vae_lib.make_vae(seed=0)


def _vae_data():
    from course_lib import vae as vae_lib

    return vae_lib.vae_batches(VAE_TRAIN_CONFIG.batch_size)


RECIPES["vae"] = VAERecipe(
    name="vae",
    description=("Shapes-world AutoencoderKL (course_lib.vae.VAE_CONFIG, 2.7 M parameters): 32x32x3 scenes -> 4x8x8 "
                 "latents, loss MSE + 1e-5 * KL per pixel value, fresh scenes every step from all colour-shape "
                 "pairs (images only, no captions; see vae.vae_batches); scaling factor = 1/std of latents of "
                 "4096 scenes, stored in config.json; EMA weights shipped in float16; metrics include a 3-run "
                 "KL-weight sweep (numbers only)."),
    build_model=_vae_model,
    build_data=_vae_data,
    loss_kwargs={"kl_weight": VAE_KL_WEIGHT},
    config=VAE_TRAIN_CONFIG,
    data_seed=VAE_TRAIN_CONFIG.seed,
    evaluate=finish_vae,
)


# ----------------------------------------------------------------------------------------------
# CLIP on the shapes world (nb 05): both towers trained ("clip"), and LiT, a locked image tower
# pretrained as a supervised classifier of the scene's contents ("clip_lit")
# ----------------------------------------------------------------------------------------------

from dataclasses import field  # noqa: E402  (ContrastiveRecipe.info)

# Equal to course_lib.clip.CLIP_CONFIG and TOWER_CONFIG (tests/test_clip.py checks it).
CLIP_TRAIN_CONFIG = training.TrainConfig(steps=5000, batch_size=128, lr=3e-3, lr_schedule="cosine",
                                         lr_warmup_steps=200, weight_decay=0.1, ema_decay=0.0, grad_clip=1.0, seed=0,
                                         checkpoint_every=500)
CLIP_TOWER_CONFIG = training.TrainConfig(steps=2500, batch_size=128, lr=3e-3, lr_schedule="cosine",
                                         lr_warmup_steps=100, weight_decay=0.01, ema_decay=0.0, grad_clip=1.0, seed=1)


@dataclass
class ContrastiveRecipe(Recipe):
    """A CLIP recipe: the contrastive loss (course_lib.clip.clip_loss) on fresh image-caption pairs with twins.

    lit=True first pretrains an image tower (clip.pretrain_image_tower with tower_config), locks it
    (clip.lit_model), and trains only the text side. The manifest also records the tokenizer's words
    (clip.load rebuilds the tokenizer from them), the trainable parameters and, for LiT, the tower's
    pretraining steps, time and accuracy.
    """

    lit: bool = False
    tower_config: training.TrainConfig | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.build_model = self._build_model
        self.build_data = self._build_data
        self.evaluate = self._evaluate

    def _tokenizer(self):
        from course_lib import text

        return text.build_tokenizer()

    def _build_model(self):
        from course_lib import clip

        tokenizer = self._tokenizer()
        if self.lit:
            tower, self.info["image_tower_pretraining"] = clip.pretrain_image_tower(self.tower_config, progress=False)
            model = clip.lit_model(tower, tokenizer, seed=self.config.seed)
        else:
            model = clip.make_clip(tokenizer, seed=self.config.seed)
        self.info["trainable_parameters"] = clip.num_trainable(model)
        return model

    def _build_data(self):
        from course_lib import clip

        return clip.caption_batches(self._tokenizer(), self.config.batch_size, twins=True)

    def _evaluate(self, model):
        from course_lib import clip

        return clip.evaluate(model.eval(), self._tokenizer())

    def loss_fn(self) -> Callable:
        from course_lib import clip

        return functools.partial(clip.clip_loss, **self.loss_kwargs)

    def to_dict(self) -> dict:
        from course_lib import clip

        return {"description": self.description, "loss": {"fn": "course_lib.clip.clip_loss", **self.loss_kwargs},
                "data": "course_lib.clip.caption_batches(twins=True): fresh 'train' scenes and edited twins",
                **clip.recipe_info(self._tokenizer()), **self.info}


RECIPES["clip"] = ContrastiveRecipe(
    name="clip",
    description=("Tiny CLIPModel (course_lib.clip TEXT_CONFIG / VISION_CONFIG, both towers trained from scratch) on "
                 "shapes-world scenes and captions, multi-positive contrastive loss, batches of scenes and edited "
                 "twins; its text tower is the text encoder of nb 06."),
    build_model=None, build_data=None, loss_kwargs={"multi_positive": True}, config=CLIP_TRAIN_CONFIG,
    data_seed=CLIP_TRAIN_CONFIG.seed, evaluate=None,
)
RECIPES["clip_lit"] = ContrastiveRecipe(
    name="clip_lit",
    description=("LiT: the image tower of a CLIPModel pretrained as a supervised classifier of each cell's colour and "
                 "shape and the background, then locked (identity image projection); only the text tower, text "
                 "projection and temperature are trained, with the same loss, data and steps as 'clip'."),
    build_model=None, build_data=None, loss_kwargs={"multi_positive": True}, config=CLIP_TRAIN_CONFIG,
    data_seed=CLIP_TRAIN_CONFIG.seed, evaluate=None, lit=True, tower_config=CLIP_TOWER_CONFIG,
)



# ----------------------------------------------------------------------------------------------
# Text to image (nb 06): a UNet2DConditionModel on the shapes VAE's latents, reading data/clip's text tower
# ----------------------------------------------------------------------------------------------

T2I_DATASET_SIZE = 60_000  # captioned 'train' scenes, encoded once at the start (latents drawn from the posterior)
T2I_TRAIN_CONFIG = training.TrainConfig(steps=6000, batch_size=64, lr=5e-4, lr_schedule="cosine", lr_warmup_steps=200,
                                        weight_decay=0.0, ema_decay=0.999, grad_clip=1.0, seed=0,
                                        checkpoint_every=500)


@dataclass
class TextToImageRecipe(Recipe):
    """The text-to-image recipe: diffusion loss on (latent, prompt embedding) pairs with caption dropout to ""."""

    def __post_init__(self):
        self._null = None
        if self.build_data is None:
            self.build_data = self._build_data

    def _encoder(self):
        from course_lib import text2image

        return text2image.load_text_encoder(device="cpu")

    def _build_data(self):
        from course_lib import text2image
        from course_lib import vae as vae_lib

        tokenizer, encoder = self._encoder()
        return text2image.latent_dataset(T2I_DATASET_SIZE, vae_lib.load_vae(device="cpu"), tokenizer, encoder,
                                         seed=self.data_seed)

    def loss_fn(self) -> Callable:
        from course_lib import text2image

        return functools.partial(training.diffusion_loss, alpha_bars=self.schedule.alpha_bars,
                                 cond_dropout=text2image.CAPTION_DROPOUT,
                                 null_cond=text2image.null_condition(*self._encoder()), **self.loss_kwargs)

    def to_dict(self) -> dict:
        from course_lib import text2image

        return {"description": self.description, "schedule": self.schedule.to_config(),
                "loss": {"fn": "course_lib.training.diffusion_loss", **self.loss_kwargs,
                         "cond_dropout": text2image.CAPTION_DROPOUT, "null_cond": 'encoder_hidden_states of ""'},
                "data": f"course_lib.text2image.latent_dataset({T2I_DATASET_SIZE}, seed={self.data_seed})",
                "text_encoder": f"data/{text2image.TEXT_ENCODER} (text tower cut to {text2image.TEXT_LAYERS} layers, frozen)", "vae": "data/vae"}


def _t2i_model():
    from course_lib import text2image

    return text2image.make_unet(seed=0)


def _t2i_evaluate(model):
    from course_lib import text2image

    return text2image.evaluate(model)


RECIPES["text2image"] = TextToImageRecipe(
    name="text2image",
    description=("UNet2DConditionModel (course_lib.text2image.UNET_CONFIG) eps-predictor on the shapes VAE's 4x8x8 "
                 "latents, cross-attending to data/clip's frozen text tower read at its embedding layer; SD's scaled_linear schedule; captions "
                 "dropped to the empty prompt with probability 0.1 for classifier-free guidance (nb 06)."),
    build_model=_t2i_model, build_data=None, loss_kwargs={"prediction_type": "epsilon"},
    config=T2I_TRAIN_CONFIG, data_seed=0, evaluate=_t2i_evaluate,
    schedule=schedules.NoiseSchedule("scaled_linear", 1000),
)


# ----------------------------------------------------------------------------------------------
# InstructPix2Pix (nb 09): the text-to-image UNet widened to read the source latent, fine-tuned on edit triples
# ----------------------------------------------------------------------------------------------

IP2P_TRAIN_CONFIG = training.TrainConfig(steps=4000, batch_size=64, lr=3e-4, lr_schedule="cosine", lr_warmup_steps=100,
                                         weight_decay=0.0, ema_decay=0.999, grad_clip=1.0, seed=0,
                                         checkpoint_every=500)
IP2P_EVAL_CASES = 100  # ShapesEdit development cases (shapesedit.DEV_SEED): the manifest's metrics, never the benchmark's


@dataclass
class InstructPix2PixRecipe(TextToImageRecipe):
    """Diffusion loss on (target latent | source latent, instruction) triples with IP2P's joint text and image dropout."""

    def _build_data(self):
        from course_lib import instruct_pix2pix
        from course_lib import vae as vae_lib

        tokenizer, encoder = self._encoder()
        return instruct_pix2pix.pair_dataset(instruct_pix2pix.DATASET_SIZE, vae_lib.load_vae(device="cpu"), tokenizer,
                                             encoder, seed=self.data_seed)

    def loss_fn(self) -> Callable:
        from course_lib import instruct_pix2pix, text2image

        null = text2image.null_condition(*self._encoder())["encoder_hidden_states"]
        return functools.partial(training.diffusion_loss, alpha_bars=self.schedule.alpha_bars,
                                 condition_dropout=functools.partial(instruct_pix2pix.conditioning_dropout, null_text=null),
                                 **self.loss_kwargs)

    def to_dict(self) -> dict:
        from course_lib import instruct_pix2pix, text2image

        return {"description": self.description, "schedule": self.schedule.to_config(),
                "loss": {"fn": "course_lib.training.diffusion_loss", **self.loss_kwargs,
                         "condition_dropout": f"course_lib.instruct_pix2pix.conditioning_dropout, p={instruct_pix2pix.DROPOUT}"},
                "init": "data/text2image, conv_in widened to 8 input channels with zero weights",
                "data": f"course_lib.instruct_pix2pix.pair_dataset({instruct_pix2pix.DATASET_SIZE}, seed={self.data_seed}) "
                        "('train' scenes; ShapesEdit draws 'test')",
                "text_encoder": f"data/{text2image.TEXT_ENCODER} (text tower cut to {text2image.TEXT_LAYERS} layers, frozen)",
                "vae": "data/vae"}


def _ip2p_model():
    from course_lib import instruct_pix2pix

    return instruct_pix2pix.make_unet()


def _ip2p_evaluate(model):
    from course_lib import instruct_pix2pix, shapesedit, text2image
    from course_lib import vae as vae_lib

    tokenizer, encoder = text2image.load_text_encoder(device=models.model_device(model))
    parts = text2image.Parts(model.eval(), vae_lib.load_vae(device=models.model_device(model)), tokenizer, encoder)
    result = shapesedit.evaluate(instruct_pix2pix.method(parts), shapesedit.cases(IP2P_EVAL_CASES, shapesedit.DEV_SEED),
                                 name="instruct_pix2pix")
    overall = result["summary"]["overall"]
    return {f"dev_{k}": round(overall[k], 4) for k in ("success", "scene_ok", "locked_psnr")}


RECIPES["instruct_pix2pix"] = InstructPix2PixRecipe(
    name="instruct_pix2pix",
    description=("InstructPix2Pix (Brooks et al. 2023): data/text2image's UNet2DConditionModel with conv_in widened to "
                 "z_t + the source image's VAE latent (8 channels, new weights zero), fine-tuned on shapes-world edit "
                 "triples with canonical instructions; text and image each dropped for 5 % of examples, both for 5 % (nb 09)."),
    build_model=_ip2p_model, build_data=None, loss_kwargs={"prediction_type": "epsilon"},
    config=IP2P_TRAIN_CONFIG, data_seed=0, evaluate=_ip2p_evaluate, schedule=RECIPES["text2image"].schedule,
)

if __name__ == "__main__":
    main(sys.argv[1:])
