"""A small CLIP trained on the shapes world: the contrastive loss, zero-shot classification, and LiT.   [notebook 05]

CLIP (Radford et al. 2021) trains an image tower f and a text tower g so that an image and its
caption land close together on the unit sphere. For a batch of N pairs, with unit embeddings
u_i = f(image_i) / |f(image_i)| and v_j = g(text_j) / |g(text_j)| and a learned temperature tau
(stored as logit_scale = log(1 / tau)), the logits are

    s_ij = <v_i, u_j> / tau          (logits_per_text; logits_per_image is its transpose)

and the symmetric InfoNCE loss averages two cross-entropies: each text must pick its image among
the N images, and each image its text among the N texts (CLIP's paper, Fig. 3):

    L = ( CE(S, diag) + CE(S^T, diag) ) / 2.                                   [eq. (5.2), nb 05]

`contrastive_loss` is that, written by hand; tests/test_clip.py checks it equals CLIPModel's own
loss (return_loss=True) on the same batch. On a small caption space a batch holds the same caption
several times; the plain loss then calls a perfect match a mistake (a "false negative").
`multi_positive_contrastive_loss` lets every row have several right answers (eq. 5.3).

The model is transformers' CLIPModel built from a CLIPConfig (TEXT_CONFIG, VISION_CONFIG): a
vision transformer on 32x32 scenes (4x4 patches) and a causal text transformer over the course
tokenizer's ids (course_lib.text). Its text tower, a CLIPTextModel, is the text encoder of the
course's text-to-image pipeline (notebook 06): text.encode_prompt(prompts, tokenizer, model).

Zero-shot classification: embed every candidate caption once, embed the image, pick the caption
with the largest cosine similarity. `zero_shot` does it for single-object scenes against all
4 colours x 3 shapes x 9 positions (x 3 backgrounds) captions and scores each attribute;
`swap_accuracy` does it for scenes with several objects, against captions that differ from the
true one in a single attribute.

LiT (locked-image tuning, Zhai et al. 2022): lock an image tower trained for something else and
train only the text tower to read it. Here the locked tower is a vision transformer first trained
as a supervised classifier of the scene's contents (`pretrain_image_tower`), as LiT locks towers
trained on labelled images. `lit_model` builds the CLIPModel around it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPConfig

from course_lib import checkpoints, models, shapes, text, training
from course_lib.validation import CourseInputError, check_choice

# The towers: ~0.2 M parameters each; hidden size 64 is also the prompt embedding width that the
# text-to-image UNet of notebook 06 cross-attends to (its cross_attention_dim).
TEXT_CONFIG = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                   hidden_act="quick_gelu")
VISION_CONFIG = dict(image_size=shapes.DEFAULT_SIZE, patch_size=4, num_channels=3, hidden_size=64,
                     intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, hidden_act="quick_gelu")
PROJECTION_DIM = 64
LOGIT_SCALE_INIT = math.log(1 / 0.07)  # CLIP's initial temperature tau = 0.07 (transformers' 2.6592)
MAX_LOGIT_SCALE = 100.0  # CLIP clips 1 / tau at 100 (its paper, sec. 2.5)
ATTRIBUTES = ("colour", "shape", "position", "background")


class CourseCLIPConfig(CLIPConfig):
    """A CLIPConfig that also reads as a dict, dict(config), the way recipes.run records a model's config.

    It saves as a plain CLIPConfig (model_type "clip"); CLIPModel.from_pretrained loads it as one.
    """

    def keys(self):
        return self.to_dict().keys()

    def __getitem__(self, key):
        return self.to_dict()[key]


def clip_config(tokenizer=None, *, text_overrides: dict | None = None, vision_overrides: dict | None = None,
                projection_dim: int = PROJECTION_DIM) -> CourseCLIPConfig:
    """Return the CLIPConfig of the course's CLIP: TEXT_CONFIG, VISION_CONFIG, and the tokenizer's ids and sizes.   [nb 05]"""
    tokenizer = tokenizer if tokenizer is not None else text.build_tokenizer()
    text_config = {**TEXT_CONFIG, **text.text_config_kwargs(tokenizer), **(text_overrides or {})}
    vision_config = {**VISION_CONFIG, **(vision_overrides or {})}
    return CourseCLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim,
                            logit_scale_init_value=LOGIT_SCALE_INIT)


def make_clip(tokenizer=None, seed: int = 0, **config_kwargs):
    """Return a fresh CLIPModel with clip_config(tokenizer, **config_kwargs), initialised from `seed`."""
    from transformers import CLIPModel

    config = clip_config(tokenizer, **config_kwargs)
    with models.seeded(seed):
        return CLIPModel(config)


# ----------------------------------------------------------------------------------------------
# Data: fresh image-caption pairs every step
# ----------------------------------------------------------------------------------------------

# How often each kind of edit makes a twin (among the kinds the scene allows): shapes are the
# hardest attribute to see at 32 x 32, so shape twins come twice as often.
TWIN_EDITS = {"colour": 1.0, "shape": 2.0, "background": 0.5, "add": 1.0, "remove": 1.0}


def _phrasing_for(scenes, u: float, phrasings) -> str:
    names = [p for p in phrasings if p != "relation" or all(len(s.objects) == 2 for s in scenes)] or ["full"]
    return names[min(int(u * len(names)), len(names) - 1)]


def twin_scenes(scenes, generator: torch.Generator | None = None, phrasings=shapes.PHRASINGS,
                kinds=TWIN_EDITS) -> tuple[list[shapes.Scene], list[str]]:
    """Return [scene, edited twin, ...] and their captions: each twin differs from its scene by one edit.   [nb 05]

    The edit (shapes.random_edit, kind drawn with the weights of `kinds`, a dict kind -> weight or a
    list of kinds) changes one colour, one shape, the background, or adds or removes an object
    (never making a held-out colour-shape pair); scene and twin are captioned in the same phrasing, so their captions differ in a
    word or a phrase. In a contrastive batch each is the other's hardest negative.
    """
    out, captions = [], []
    weights = dict(kinds) if isinstance(kinds, dict) else dict.fromkeys(kinds, 1.0)
    u = torch.rand(len(scenes), 2, generator=generator).tolist()
    for scene, (ui, uk) in zip(scenes, u):
        allowed = [k for k in weights if k in shapes.possible_edit_kinds(scene)]
        r, kind = uk * sum(weights[k] for k in allowed), allowed[-1]
        for k in allowed:  # draw a kind with probability proportional to its weight
            if r < weights[k]:
                kind = k
                break
            r -= weights[k]
        twin = shapes.apply_edit(scene, shapes.random_edit(scene, generator, (kind,)))
        phrasing = _phrasing_for((scene, twin), ui, phrasings)
        out += [scene, twin]
        captions += [shapes.caption(scene, phrasing), shapes.caption(twin, phrasing)]
    return out, captions


def caption_batches(tokenizer, batch_size: int, split: str = "train", *, num_objects=(1, shapes.MAX_OBJECTS),
                    phrasings=shapes.PHRASINGS, twins: bool = True, size: int = shapes.DEFAULT_SIZE):
    """Return data(generator) -> {"input_ids": (B, L), "pixel_values": (B, 3, S, S)}: new scenes, random phrasings.   [nb 05]

    twins=True: the batch is B/2 scenes and their edited twins (twin_scenes), so that telling a
    circle from a square, or which object is red, is needed inside every batch (hard negatives, as
    in NegCLIP, Yuksekgonul et al. 2023); twins=False: B independent scenes. pixel_values are the
    rendered images in [-1, 1] as they are (no CLIPImageProcessor normalisation); input_ids are
    padded to tokenizer.model_max_length as the SD pipeline pads.
    """
    check_choice(split, ("train", "test"), "split")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2 or (twins and batch_size % 2):
        raise CourseInputError(f"batch_size must be an int >= 2 (a contrastive batch needs negatives), and even "
                               f"with twins=True; got {batch_size!r}.")

    def data(generator: torch.Generator) -> dict:
        if twins:
            base = shapes.sample_scenes(batch_size // 2, split=split, num_objects=num_objects, generator=generator)
            scenes, captions = twin_scenes(base, generator, phrasings)
        else:
            scenes = shapes.sample_scenes(batch_size, split=split, num_objects=num_objects, generator=generator)
            captions = shapes.random_captions(scenes, generator, phrasings)
        return {"input_ids": text.tokenize(captions, tokenizer), "pixel_values": shapes.render(scenes, size),
                "positives": true_captions(scenes, captions)}

    return data


def true_captions(scenes, captions) -> torch.Tensor:
    """Return P (B, B) bool: P_ij = True when caption j is a true description of scene i.   [eq. 5.3, nb 05]

    Caption j is true of scene i when some phrasing of scene i gives exactly caption j: a caption
    without a background ("objects" phrasing) is true of the same objects on any background, and
    "a red circle to the left of a blue square" of every scene with that pair in that order.
    """
    scenes, captions = list(scenes), list(captions)
    if len(scenes) != len(captions):
        raise CourseInputError(f"need one caption per scene, got {len(scenes)} scenes and {len(captions)} captions.")
    index = {c: j for j, c in enumerate(dict.fromkeys(captions))}
    caption_ids = torch.tensor([index[c] for c in captions])
    holds = torch.zeros(len(scenes), len(index), dtype=torch.bool)  # scene i -> distinct caption k
    for i, scene in enumerate(scenes):
        for c in shapes.captions(scene).values():
            if c in index:
                holds[i, index[c]] = True
    positives = holds[:, caption_ids]
    if not positives.diagonal().all():
        raise CourseInputError("some caption does not describe its own scene; pass captions made by shapes.caption().")
    return positives


# ----------------------------------------------------------------------------------------------
# Embeddings and the contrastive loss [CLIP Fig. 3, nb 05]
# ----------------------------------------------------------------------------------------------

def embed_texts(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Return unit text embeddings v = g(ids) / |g(ids)|: text tower, pooled at the end token, projected.   Shapes: (B, L) -> (B, P)."""
    v = model.get_text_features(input_ids=input_ids).pooler_output
    return v / v.norm(dim=-1, keepdim=True)


def embed_images(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Return unit image embeddings u = f(x) / |f(x)|: vision tower's class token, projected.   Shapes: (B, 3, S, S) -> (B, P)."""
    u = model.get_image_features(pixel_values=pixel_values).pooler_output
    return u / u.norm(dim=-1, keepdim=True)


def logit_scale(model) -> torch.Tensor:
    """Return 1 / tau = exp(model.logit_scale), clipped at MAX_LOGIT_SCALE = 100 as CLIP does."""
    return model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def similarity_logits(model, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
    """Return logits_per_text S = <v_i, u_j> / tau, as CLIPModel computes them.   [eq. 5.1, nb 05]   Shapes: (Bt, Bi)."""
    return logit_scale(model) * embed_texts(model, input_ids) @ embed_images(model, pixel_values).T


def contrastive_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Return CLIP's symmetric InfoNCE loss (CE over rows + CE over columns) / 2 with targets on the diagonal.   [eq. 5.2, nb 05]

    Written out: each row's log-softmax at its diagonal entry, averaged, for S and for S^T.
    """
    if logits_per_text.ndim != 2 or logits_per_text.shape[0] != logits_per_text.shape[1]:
        raise CourseInputError(f"logits must be a square (B, B) matrix, got {tuple(logits_per_text.shape)}.")
    diag = torch.arange(len(logits_per_text), device=logits_per_text.device)
    text_to_image = -logits_per_text.log_softmax(dim=1)[diag, diag].mean()  # each text picks its image
    image_to_text = -logits_per_text.log_softmax(dim=0)[diag, diag].mean()  # each image picks its text
    return (text_to_image + image_to_text) / 2


def same_caption(input_ids: torch.Tensor) -> torch.Tensor:
    """Return P (B, B) bool: P_ij = True when texts i and j have the same ids (the same caption). The diagonal is True."""
    return (input_ids[:, None, :] == input_ids[None, :, :]).all(-1)


def multi_positive_contrastive_loss(logits_per_text: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Return the symmetric contrastive loss with several right answers per row.   [eq. 5.3, nb 05]

    Each row's target is spread evenly over its positives: CE with soft targets P_ij / sum_j P_ij,
    for S and for S^T. With P the identity it is contrastive_loss exactly.
    Shapes: logits (B, B), positives (B, B) bool with a True diagonal.
    """
    if positives.shape != logits_per_text.shape or positives.dtype != torch.bool:
        raise CourseInputError(f"positives must be a bool matrix of the logits' shape {tuple(logits_per_text.shape)}.")
    if not positives.diagonal().all():
        raise CourseInputError("every pair is its own positive: positives must have a True diagonal.")
    targets = positives.to(logits_per_text.dtype)
    text_to_image = -(targets / targets.sum(1, keepdim=True) * logits_per_text.log_softmax(dim=1)).sum(1).mean()
    image_to_text = -(targets / targets.sum(0, keepdim=True) * logits_per_text.log_softmax(dim=0)).sum(0).mean()
    return (text_to_image + image_to_text) / 2


def clip_loss(model, batch: dict, generator: torch.Generator | None = None, *, multi_positive: bool = True) -> torch.Tensor:
    """Return the contrastive loss of a batch {"input_ids", "pixel_values"[, "positives"]}: a loss_fn for training.train.   [nb 05]

    multi_positive=True (default): every true caption of an image is a right answer
    (multi_positive_contrastive_loss with batch["positives"], from true_captions(); without it,
    identical captions, same_caption()); False: CLIP's plain loss, the diagonal only.
    """
    logits = similarity_logits(model, batch["input_ids"], batch["pixel_values"])
    if not multi_positive:
        return contrastive_loss(logits)
    positives = batch.get("positives")
    positives = same_caption(batch["input_ids"]) if positives is None else positives.T  # (texts, images)
    return multi_positive_contrastive_loss(logits, positives)


# ----------------------------------------------------------------------------------------------
# Zero-shot classification [CLIP sec. 3.1, nb 05]
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def text_embeddings(model, tokenizer, captions, batch_size: int = 1024) -> torch.Tensor:
    """Return unit embeddings (N, P) of a list of captions, on the CPU."""
    model.eval()
    device = models.model_device(model)
    captions = [captions] if isinstance(captions, str) else list(captions)
    out = []
    for i in range(0, len(captions), batch_size):
        ids = text.tokenize(captions[i: i + batch_size], tokenizer)
        # Drop the columns that are padding in every row: the text tower is causal, so the pooled
        # state at the end token does not depend on what follows it (the same embeddings, faster).
        ids = ids[:, : int((ids != tokenizer.pad_token_id).sum(1).max())]
        out.append(embed_texts(model, ids.to(device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def image_embeddings(model, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Return unit embeddings (N, P) of images (N, 3, S, S) in [-1, 1], on the CPU."""
    model.eval()
    device = models.model_device(model)
    if images.ndim == 3:
        images = images[None]
    return torch.cat([embed_images(model, images[i: i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(images), batch_size)])


def rank_captions(model, tokenizer, image: torch.Tensor, captions, top: int | None = None) -> list[tuple[str, float]]:
    """Return (caption, probability) pairs for one image, best first: softmax over the captions of <v, u> / tau.   [nb 05]"""
    captions = list(captions)
    v, u = text_embeddings(model, tokenizer, captions), image_embeddings(model, image)
    with torch.no_grad():
        probs = (logit_scale(model).float().cpu() * u @ v.T)[0].softmax(0)
    order = probs.argsort(descending=True).tolist()[:top]
    return [(captions[i], float(probs[i])) for i in order]


@dataclass
class Candidates:
    """Every single-object caption: the captions, and each one's attribute indices (colour, shape, position, background)."""

    captions: list[str]
    labels: dict[str, torch.Tensor]  # attribute -> (N,) index into attribute_values(attribute)
    phrasing: str


def attribute_values(attribute: str) -> list[str]:
    """Return the values an attribute takes, in the order confusion matrices use: colours, shapes, positions, backgrounds."""
    check_choice(attribute, ATTRIBUTES, "attribute")
    return {"colour": list(shapes.COLOURS), "shape": list(shapes.SHAPES),
            "position": [shapes.POSITIONS[(r, c)] for r in range(shapes.GRID) for c in range(shapes.GRID)],
            "background": list(shapes.BACKGROUNDS)}[attribute]


def single_object_labels(scenes) -> dict[str, torch.Tensor]:
    """Return each single-object scene's attribute indices {attribute: (B,)} (attribute_values order)."""
    if not all(len(s.objects) == 1 for s in scenes):
        raise CourseInputError("single-object zero-shot needs scenes with exactly one object; "
                               "sample them with shapes.sample_scenes(n, num_objects=1).")
    index = {a: {v: i for i, v in enumerate(attribute_values(a))} for a in ATTRIBUTES}
    return {"colour": torch.tensor([index["colour"][s.objects[0].colour] for s in scenes]),
            "shape": torch.tensor([index["shape"][s.objects[0].shape] for s in scenes]),
            "position": torch.tensor([index["position"][s.objects[0].position] for s in scenes]),
            "background": torch.tensor([index["background"][s.background] for s in scenes])}


def single_object_candidates(phrasing: str = "full") -> Candidates:
    """Return all single-object captions: 4 colours x 3 shapes x 9 positions (x 3 backgrounds unless phrasing="objects").

    Held-out colour-shape pairs are candidates too: the model may name them.
    """
    check_choice(phrasing, ("full", "objects", "background_first"), "phrasing")
    backgrounds = list(shapes.BACKGROUNDS) if phrasing != "objects" else ["black"]
    scenes = [shapes.Scene((shapes.ShapeObject(s, c, r, k),), b)
              for c in shapes.COLOURS for s in shapes.SHAPES for r in range(shapes.GRID) for k in range(shapes.GRID)
              for b in backgrounds]
    labels = single_object_labels(scenes)
    if phrasing == "objects":
        del labels["background"]
    return Candidates([shapes.caption(s, phrasing) for s in scenes], labels, phrasing)


@dataclass
class ZeroShot:
    """Zero-shot predictions on single-object scenes: true and predicted attribute indices, and accuracies."""

    truth: dict[str, torch.Tensor]
    predicted: dict[str, torch.Tensor]
    accuracy: dict[str, float]
    predicted_captions: list[str] = field(repr=False)
    num_candidates: int = 0

    def confusion(self, attribute: str) -> torch.Tensor:
        """Return the (K, K) confusion matrix of an attribute: rows true value, columns predicted."""
        return confusion_matrix(self.truth[attribute], self.predicted[attribute], len(attribute_values(attribute)))


def confusion_matrix(truth: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return counts C (K, K) with C[i, j] = number of examples of true class i predicted as j."""
    return torch.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def zero_shot(model, tokenizer, scenes, *, phrasing: str = "full", size: int = shapes.DEFAULT_SIZE) -> ZeroShot:
    """Classify single-object scenes by their most similar caption among all single_object_candidates().   [nb 05]

    accuracy[attribute]: share of scenes whose top caption names the right colour / shape / position /
    background; accuracy["full"]: share whose top caption is exactly right.
    """
    scenes = list(scenes)
    truth = single_object_labels(scenes)
    cands = single_object_candidates(phrasing)
    sims = image_embeddings(model, shapes.render(scenes, size)) @ text_embeddings(model, tokenizer, cands.captions).T
    best = sims.argmax(1)
    predicted = {a: cands.labels[a][best] for a in cands.labels}
    truth = {a: truth[a] for a in cands.labels}
    accuracy = {a: float((predicted[a] == truth[a]).double().mean()) for a in cands.labels}
    accuracy["full"] = float(torch.stack([predicted[a] == truth[a] for a in cands.labels]).all(0).double().mean())
    return ZeroShot(truth, predicted, accuracy, [cands.captions[i] for i in best.tolist()], len(cands.captions))


SWAPS = ("colour", "shape", "position", "background", "binding")


def swap_candidates(scene: shapes.Scene, kind: str, phrasing: str = "full") -> list[str]:
    """Return the true caption first, then every caption that differs from it in one `kind` of change.   [nb 05]

    colour / shape: one object gets another colour / shape; position: one object moves to a free
    cell; background: another background; binding: two objects of different colours swap colours
    (same words, other pairing: a test of whether the model binds each colour to its shape).
    """
    check_choice(kind, SWAPS, "swap kind")
    objs, out = list(scene.objects), []
    for k, o in enumerate(objs):
        if kind == "colour":
            variants = [replace(o, colour=c) for c in shapes.COLOURS if c != o.colour]
        elif kind == "shape":
            variants = [replace(o, shape=s) for s in shapes.SHAPES if s != o.shape]
        elif kind == "position":
            variants = [replace(o, row=r, col=c, dx=0.0, dy=0.0) for r, c in scene.free_cells()]
        else:
            variants = []
        out += [shapes.Scene(tuple(objs[:k] + [v] + objs[k + 1:]), scene.background) for v in variants]
    if kind == "background":
        out = [shapes.Scene(scene.objects, b) for b in shapes.BACKGROUNDS if b != scene.background]
    if kind == "binding":
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                if objs[i].colour != objs[j].colour:
                    swapped = list(objs)
                    swapped[i] = replace(objs[i], colour=objs[j].colour)
                    swapped[j] = replace(objs[j], colour=objs[i].colour)
                    out.append(shapes.Scene(tuple(swapped), scene.background))
    true_caption = shapes.caption(scene, phrasing)
    return [true_caption] + [c for c in dict.fromkeys(shapes.caption(s, phrasing) for s in out) if c != true_caption]


def swap_accuracy(model, tokenizer, scenes, *, kinds=SWAPS, phrasing: str = "full",
                  size: int = shapes.DEFAULT_SIZE) -> dict[str, float]:
    """Return, per kind of swap, the share of scenes whose true caption beats every one-change variant.   [nb 05]

    Scenes for which a kind makes no variant (binding with one colour) are left out of that kind.
    """
    scenes = list(scenes)
    u = image_embeddings(model, shapes.render(scenes, size))
    out = {}
    for kind in kinds:
        groups = [swap_candidates(s, kind, phrasing) for s in scenes]
        keep = [i for i, g in enumerate(groups) if len(g) > 1]
        flat = [c for i in keep for c in groups[i]]
        if not keep:
            out[kind] = float("nan")
            continue
        v = text_embeddings(model, tokenizer, flat)
        right, start = 0, 0
        for i in keep:
            sims = v[start: start + len(groups[i])] @ u[i]
            right += int(sims.argmax() == 0)
            start += len(groups[i])
        out[kind] = right / len(keep)
    return out


def evaluate(model, tokenizer, *, num_scenes: int = 1000, seed: int = 0) -> dict[str, float]:
    """Return the shipped zero-shot figures: single-object (test and held-out-pair splits) and swap accuracies.   [nb 05]

    test: the training law, scenes never trained on; heldout: every scene's object is a held-out
    colour-shape pair (blue triangle, yellow circle) that training never showed.
    """
    out = {}
    for split in ("test", "heldout"):
        result = zero_shot(model, tokenizer, shapes.sample_scenes(num_scenes, seed=seed, split=split, num_objects=1))
        out.update({f"zero_shot_{split}_single_{a}": round(v, 4) for a, v in result.accuracy.items()})
    multi = shapes.sample_scenes(num_scenes // 2, seed=seed + 1, split="test", num_objects=(2, shapes.MAX_OBJECTS))
    out.update({f"swap_test_multi_{k}": round(v, 4) for k, v in swap_accuracy(model, tokenizer, multi).items()})
    return out


# ----------------------------------------------------------------------------------------------
# LiT: a locked image tower, pretrained as a supervised classifier of the scene's contents
# ----------------------------------------------------------------------------------------------

NUM_CELLS = shapes.GRID * shapes.GRID
EMPTY_COLOUR, EMPTY_SHAPE = len(shapes.COLOURS), len(shapes.SHAPES)  # the "nothing here" class of a cell


def cell_labels(scenes) -> dict[str, torch.Tensor]:
    """Return the supervised labels of scenes: per cell colour (B, 9) and shape (B, 9) (last class = empty), background (B,)."""
    colour = torch.full((len(scenes), NUM_CELLS), EMPTY_COLOUR)
    shape = torch.full((len(scenes), NUM_CELLS), EMPTY_SHAPE)
    colour_id, shape_id = {c: i for i, c in enumerate(shapes.COLOURS)}, {s: i for i, s in enumerate(shapes.SHAPES)}
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            colour[i, o.row * shapes.GRID + o.col] = colour_id[o.colour]
            shape[i, o.row * shapes.GRID + o.col] = shape_id[o.shape]
    background = torch.tensor([list(shapes.BACKGROUNDS).index(s.background) for s in scenes])
    return {"colour": colour, "shape": shape, "background": background}


class SceneClassifier(nn.Module):
    """A CLIP vision tower with a linear head that names each cell's colour and shape and the background.   [nb 05]

    logits = W h_cls + b, split into 9 x (4 colours + empty), 9 x (3 shapes + empty) and 3 backgrounds.
    Colour and shape are separate heads, so a held-out pair is two known answers.
    """

    def __init__(self, vision_model):
        super().__init__()
        self.vision_model = vision_model
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
    out = model(batch["pixel_values"])
    return (F.cross_entropy(out["colour"].flatten(0, 1), batch["colour"].flatten())
            + F.cross_entropy(out["shape"].flatten(0, 1), batch["shape"].flatten())
            + F.cross_entropy(out["background"], batch["background"]))


def labelled_batches(batch_size: int, split: str = "train", size: int = shapes.DEFAULT_SIZE):
    """Return data(generator) -> {"pixel_values", "colour", "shape", "background"}: new labelled scenes every call."""

    def data(generator: torch.Generator) -> dict:
        scenes = shapes.sample_scenes(batch_size, split=split, generator=generator)
        return {"pixel_values": shapes.render(scenes, size), **cell_labels(scenes)}

    return data


@torch.no_grad()
def classifier_accuracy(model: SceneClassifier, scenes, size: int = shapes.DEFAULT_SIZE) -> dict[str, float]:
    """Return the share of cells whose colour and shape are right, and of scenes whose every cell and background are right."""
    model.eval()
    labels = cell_labels(scenes)
    out = model(shapes.render(scenes, size).to(models.model_device(model)))
    pred = {k: v.argmax(-1).cpu() for k, v in out.items()}
    cells = (pred["colour"] == labels["colour"]) & (pred["shape"] == labels["shape"])
    scene_ok = cells.all(1) & (pred["background"] == labels["background"])
    return {"cell_accuracy": float(cells.double().mean()), "scene_accuracy": float(scene_ok.double().mean())}


# The LiT tower's pretraining (recipes "clip_lit"): fresh labelled scenes, 2,500 steps.
TOWER_CONFIG = training.TrainConfig(steps=2500, batch_size=128, lr=3e-3, lr_schedule="cosine", lr_warmup_steps=100,
                                    weight_decay=0.01, ema_decay=0.0, grad_clip=1.0, seed=1)


def pretrain_image_tower(config: training.TrainConfig = TOWER_CONFIG, *, seed: int = 1, device=None,
                         progress: bool | None = True):
    """Train a CLIP vision tower as a SceneClassifier with training.train; return (vision_model, info dict).   [LiT, nb 05]

    info: steps, wall_time_s, and classifier_accuracy on 1,000 test-split scenes.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

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
    model.vision_model.requires_grad_(False)
    model.visual_projection.requires_grad_(False)


def lit_model(vision_model, tokenizer=None, seed: int = 0):
    """Return a CLIPModel whose image tower is `vision_model`, locked, with an identity image projection.   [LiT, nb 05]

    The image embedding is then the locked tower's pooled feature itself; the text tower, text
    projection and temperature start fresh (from `seed`) and are the only trainable parameters.
    """
    if vision_model.config.hidden_size != PROJECTION_DIM:
        raise CourseInputError(f"the locked tower's width ({vision_model.config.hidden_size}) must equal "
                               f"PROJECTION_DIM ({PROJECTION_DIM}) for an identity image projection.")
    model = make_clip(tokenizer, seed)
    model.vision_model.load_state_dict(vision_model.state_dict())
    with torch.no_grad():
        model.visual_projection.weight.copy_(torch.eye(PROJECTION_DIM))
    lock_image_tower(model)
    return model


def num_trainable(model) -> int:
    """Return the number of parameters with requires_grad=True."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------
# Training settings, saving and loading the shipped models
# ----------------------------------------------------------------------------------------------

# Contrastive training, both towers ("clip") or LiT's text side ("clip_lit"): 5,000 steps of 64
# scenes and their 64 edited twins.
CLIP_CONFIG = training.TrainConfig(steps=5000, batch_size=128, lr=3e-3, lr_schedule="cosine", lr_warmup_steps=200,
                                   weight_decay=0.1, ema_decay=0.0, grad_clip=1.0, seed=0, checkpoint_every=500)


def train_clip(model, tokenizer, config: training.TrainConfig = CLIP_CONFIG, *, multi_positive: bool = True,
               twins: bool = True, device=None, progress: bool | None = True, callback=None) -> training.TrainState:
    """Train a CLIPModel (both towers, or LiT's text side) on fresh shapes-world pairs with training.train.   [nb 05]"""
    loss_fn = functools.partial(clip_loss, multi_positive=multi_positive)
    return training.train(model, caption_batches(tokenizer, config.batch_size, twins=twins), loss_fn, config, device=device,
                          progress=progress, callback=callback)


def recipe_info(tokenizer) -> dict:
    """Return what a CLIP manifest records about the tokenizer: its words (to rebuild it) and max length."""
    vocab = tokenizer.get_vocab()
    words = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in text.SPECIAL_TOKENS]
    return {"tokenizer": {"class": "transformers.PreTrainedTokenizerFast (tokenizers WordLevel)",
                          "words": words, "max_length": tokenizer.model_max_length,
                          "special_tokens": dict(zip(text.SPECIAL_TOKENS, range(len(text.SPECIAL_TOKENS))))}}


def load(name: str = "clip", device=None):
    """Load a shipped CLIP checkpoint (hashes verified): return (CLIPModel in eval mode, tokenizer).   [nb 05-06]

    The tokenizer is rebuilt from the words its manifest records, so it always matches the weights.
    """
    model = checkpoints.load(name, device=device)
    manifest = checkpoints.read_manifest(name)
    info = manifest.get("recipe", {}).get("tokenizer")
    if info is None:
        raise CourseInputError(f"the manifest of {name!r} records no tokenizer; rebuild it with "
                               f"`python -m course_lib.recipes {name}`.")
    tokenizer = text.build_tokenizer(info["words"], info["max_length"])
    if len(tokenizer) != model.config.text_config.vocab_size:
        raise CourseInputError(f"the tokenizer of {name!r} has {len(tokenizer)} tokens but the model "
                               f"{model.config.text_config.vocab_size}; rebuild with `python -m course_lib.recipes {name}`.")
    return model, tokenizer


def shipped_figures(name: str = "clip") -> dict:
    """Return a shipped checkpoint's training record: steps, wall time (s), trainable parameters, metrics, pretraining."""
    manifest = checkpoints.read_manifest(name)
    recipe = manifest.get("recipe", {})
    return {"steps": manifest["steps"], "wall_time_s": manifest["wall_time_s"], "metrics": manifest["metrics"],
            "trainable_parameters": recipe.get("trainable_parameters"),
            "image_tower_pretraining": recipe.get("image_tower_pretraining")}
