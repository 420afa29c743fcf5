"""LiT: a locked image tower, pretrained as a supervised classifier of the scene's contents.   [LiT, nb 05]

LiT (locked-image tuning, Zhai et al. 2022): lock an image tower trained for something else and
train only the text tower to read it. Here the locked tower is a vision transformer first trained
as a supervised classifier of the scene's contents (`pretrain_image_tower`), as LiT locks towers
trained on labelled images. `lit_model` builds the CLIPModel around it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from course_lib import models, noise, shapes, training
from course_lib.clip.data import check_scenes
from course_lib.clip.model import PROJECTION_DIM, VISION_CONFIG, check_clip_model, make_clip
from course_lib.validation import CourseInputError, check_choice, check_int

NUM_CELLS = shapes.GRID * shapes.GRID
EMPTY_COLOUR, EMPTY_SHAPE = len(shapes.COLOURS), len(shapes.SHAPES)  # the "nothing here" class of a cell

# The LiT tower's pretraining (recipe "clip_lit"): fresh labelled scenes, 2,500 steps.
TOWER_CONFIG = training.TrainConfig(steps=2500, batch_size=128, lr=3e-3, lr_schedule="cosine", lr_warmup_steps=100,
                                    weight_decay=0.01, ema_decay=0.0, grad_clip=1.0, seed=1)


def check_train_config(config, name: str = "config") -> training.TrainConfig:
    """Return `config` if it is a training.TrainConfig, else raise saying how to make one."""
    if not isinstance(config, training.TrainConfig):
        raise CourseInputError(f"{name} must be a training.TrainConfig, got {type(config).__name__}; e.g. "
                               f"training.TrainConfig.from_dict({{**clip.CLIP_CONFIG.to_dict(), 'steps': 100}}).")
    return config


def cell_labels(scenes) -> dict[str, torch.Tensor]:
    """Return the supervised labels of scenes: per cell colour (B, 9) and shape (B, 9) (last class = empty), background (B,)."""
    scenes = check_scenes(scenes, allow_empty=True)
    colour = torch.full((len(scenes), NUM_CELLS), EMPTY_COLOUR)
    shape = torch.full((len(scenes), NUM_CELLS), EMPTY_SHAPE)
    colour_id, shape_id = {c: i for i, c in enumerate(shapes.COLOURS)}, {s: i for i, s in enumerate(shapes.SHAPES)}
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            colour[i, o.row * shapes.GRID + o.col] = colour_id[o.colour]
            shape[i, o.row * shapes.GRID + o.col] = shape_id[o.shape]
    background = torch.tensor([list(shapes.BACKGROUNDS).index(s.background) for s in scenes], dtype=torch.long)
    return {"colour": colour, "shape": shape, "background": background}


def _check_vision_model(vision_model) -> CLIPVisionModel:
    if not isinstance(vision_model, CLIPVisionModel):
        raise CourseInputError(f"vision_model must be a transformers CLIPVisionModel (e.g. the first result of "
                               f"clip.pretrain_image_tower()), got {type(vision_model).__name__}.")
    return vision_model


class SceneClassifier(nn.Module):
    """A CLIP vision tower with a linear head that names each cell's colour and shape and the background.   [nb 05]

    logits = W h_cls + b, split into 9 x (4 colours + empty), 9 x (3 shapes + empty) and 3 backgrounds.
    Colour and shape are separate heads, so a held-out pair is two known answers.
    """

    def __init__(self, vision_model):
        super().__init__()
        self.vision_model = _check_vision_model(vision_model)
        sizes = (NUM_CELLS * (EMPTY_COLOUR + 1), NUM_CELLS * (EMPTY_SHAPE + 1), len(shapes.BACKGROUNDS))
        self.sizes = sizes
        self.head = nn.Linear(vision_model.config.hidden_size, sum(sizes))

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.vision_model(pixel_values=pixel_values).pooler_output  # (B, D)
        colour, shape, background = self.head(h).split(self.sizes, dim=-1)
        return {"colour": colour.reshape(-1, NUM_CELLS, EMPTY_COLOUR + 1),
                "shape": shape.reshape(-1, NUM_CELLS, EMPTY_SHAPE + 1), "background": background}


def scene_classifier_loss(model: SceneClassifier, batch: dict, generator=None) -> torch.Tensor:
    """Return the summed cross-entropies of the cell colours, cell shapes and background: a loss_fn for training.train."""
    noise.as_generator(generator)  # not used: the loss draws nothing
    keys = {"pixel_values", "colour", "shape", "background"}
    if not isinstance(model, SceneClassifier) or not isinstance(batch, dict) or not keys <= set(batch):
        raise CourseInputError(f"need a clip.SceneClassifier and a batch dict with {sorted(keys)} "
                               f"(clip.labelled_batches makes them).")
    out = model(batch["pixel_values"])
    return (F.cross_entropy(out["colour"].flatten(0, 1), batch["colour"].flatten())
            + F.cross_entropy(out["shape"].flatten(0, 1), batch["shape"].flatten())
            + F.cross_entropy(out["background"], batch["background"]))


def labelled_batches(batch_size: int, split: str = "train", size: int = shapes.DEFAULT_SIZE):
    """Return data(generator) -> {"pixel_values", "colour", "shape", "background"}: new labelled scenes every call.

    data() takes a torch.Generator or an int seed.
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    check_choice(split, ("train", "test"), "split")
    size = shapes.check_size(size)

    def data(generator) -> dict:
        scenes = shapes.sample_scenes(batch_size, split=split, generator=noise.as_generator(generator))
        return {"pixel_values": shapes.render(scenes, size), **cell_labels(scenes)}

    return data


@torch.no_grad()
def classifier_accuracy(model: SceneClassifier, scenes, size: int = shapes.DEFAULT_SIZE) -> dict[str, float]:
    """Return the share of cells whose colour and shape are right, and of scenes whose every cell and background are right."""
    if not isinstance(model, SceneClassifier):
        raise CourseInputError(f"model must be a clip.SceneClassifier, got {type(model).__name__}.")
    scenes = check_scenes(scenes)
    model.eval()
    labels = cell_labels(scenes)
    out = model(shapes.render(scenes, size).to(models.model_device(model)))
    pred = {k: v.argmax(-1).cpu() for k, v in out.items()}
    cells = (pred["colour"] == labels["colour"]) & (pred["shape"] == labels["shape"])
    scene_ok = cells.all(1) & (pred["background"] == labels["background"])
    return {"cell_accuracy": float(cells.double().mean()), "scene_accuracy": float(scene_ok.double().mean())}


def pretrain_image_tower(config: training.TrainConfig = TOWER_CONFIG, *, seed: int = 1, device=None,
                         progress: bool | None = True) -> tuple[CLIPVisionModel, dict]:
    """Train a CLIP vision tower as a SceneClassifier with training.train; return (vision_model, info dict).   [LiT, nb 05]

    info: steps, wall_time_s, and classifier_accuracy on 1,000 test-split scenes.
    """
    check_train_config(config)
    seed = check_int(seed, "seed", minimum=0)
    with models.seeded(seed):
        classifier = SceneClassifier(CLIPVisionModel(CLIPVisionConfig(**VISION_CONFIG)))
    state = training.train(classifier, labelled_batches(config.batch_size), scene_classifier_loss, config,
                           device=device, progress=progress)
    accuracy = classifier_accuracy(classifier, shapes.sample_scenes(1000, seed=0, split="test"))
    info = {"steps": state.step, "wall_time_s": round(state.wall_time_s, 1), **{k: round(v, 4) for k, v in accuracy.items()},
            "train_config": config.to_dict(), "seed": seed}
    return classifier.vision_model.cpu(), info


def lock_image_tower(model) -> None:
    """Freeze the vision tower and the image projection (requires_grad False): only the text side learns.   [LiT, nb 05]"""
    check_clip_model(model)
    model.vision_model.requires_grad_(False)
    model.visual_projection.requires_grad_(False)


def lit_model(vision_model, tokenizer=None, seed: int = 0):
    """Return a CLIPModel whose image tower is `vision_model`, locked, with an identity image projection.   [LiT, nb 05]

    The image embedding is then the locked tower's pooled feature itself; the text tower, text
    projection and temperature start fresh (from `seed`) and are the only trainable parameters.
    """
    _check_vision_model(vision_model)
    if vision_model.config.hidden_size != PROJECTION_DIM:
        raise CourseInputError(f"the locked tower's width ({vision_model.config.hidden_size}) must equal "
                               f"PROJECTION_DIM ({PROJECTION_DIM}) for an identity image projection.")
    model = make_clip(tokenizer, seed)
    try:
        model.vision_model.load_state_dict(vision_model.state_dict())
    except RuntimeError as exc:
        raise CourseInputError(f"the locked tower's layers do not match clip.VISION_CONFIG's "
                               f"({str(exc).splitlines()[0]}); pretrain it with clip.pretrain_image_tower().") from None
    with torch.no_grad():
        model.visual_projection.weight.copy_(torch.eye(PROJECTION_DIM))
    lock_image_tower(model)
    return model


def num_trainable(model) -> int:
    """Return the number of parameters with requires_grad=True."""
    if not isinstance(model, nn.Module):
        raise CourseInputError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
