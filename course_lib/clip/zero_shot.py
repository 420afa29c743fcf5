"""Zero-shot classification: embed every candidate caption once, embed the image, pick the most similar caption.   [CLIP sec. 3.1, nb 05]

`zero_shot` does it for single-object scenes against all 4 colours x 3 shapes x 9 positions
(x 3 backgrounds) captions and scores each attribute; `swap_accuracy` does it for scenes with
several objects, against captions that differ from the true one in a single attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from course_lib import models, shapes, text
from course_lib.clip.data import check_scenes
from course_lib.clip.loss import embed_images, embed_texts, logit_scale
from course_lib.clip.model import check_clip_model
from course_lib.validation import CourseInputError, check_choice, check_int

ATTRIBUTES = ("colour", "shape", "position", "background")
SWAPS = ("colour", "shape", "position", "background", "binding")


@torch.no_grad()
def text_embeddings(model, tokenizer, captions, batch_size: int = 1024) -> torch.Tensor:
    """Return unit embeddings (N, P) of a caption or a list of captions, on the CPU."""
    check_clip_model(model)
    captions = text.as_prompts(captions)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    model.eval()
    device = models.model_device(model)
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
    """Return unit embeddings (N, P) of images (N, 3, S, S) (or one image (3, S, S)) in [-1, 1], on the CPU."""
    check_clip_model(model)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    model.eval()
    device = models.model_device(model)
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        images = images[None]
    return torch.cat([embed_images(model, images[i: i + batch_size].to(device)).float().cpu()
                      for i in range(0, max(1, len(images)), batch_size)])


def rank_captions(model, tokenizer, image: torch.Tensor, captions, top: int | None = None) -> list[tuple[str, float]]:
    """Return (caption, probability) pairs for one image, best first: softmax over the captions of <v, u> / tau.   [nb 05]"""
    captions = text.as_prompts(captions)
    if top is not None:
        top = check_int(top, "top", minimum=1, hint="how many captions to return; None for all")
    if isinstance(image, torch.Tensor) and image.ndim == 4 and len(image) != 1:
        raise CourseInputError(f"rank_captions ranks captions for ONE image (3, S, S) or (1, 3, S, S), got a batch of "
                               f"{len(image)}; call it once per image.")
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
    scenes = check_scenes(scenes, allow_empty=True)
    if not all(len(s.objects) == 1 for s in scenes):
        raise CourseInputError("single-object zero-shot needs scenes with exactly one object; "
                               "sample them with shapes.sample_scenes(n, num_objects=1).")
    index = {a: {v: i for i, v in enumerate(attribute_values(a))} for a in ATTRIBUTES}
    return {"colour": torch.tensor([index["colour"][s.objects[0].colour] for s in scenes], dtype=torch.long),
            "shape": torch.tensor([index["shape"][s.objects[0].shape] for s in scenes], dtype=torch.long),
            "position": torch.tensor([index["position"][s.objects[0].position] for s in scenes], dtype=torch.long),
            "background": torch.tensor([index["background"][s.background] for s in scenes], dtype=torch.long)}


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


def confusion_matrix(truth: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return counts C (K, K) with C[i, j] = number of examples of true class i predicted as j."""
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    for name, labels in (("truth", truth), ("predicted", predicted)):
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool \
                or labels.ndim != 1:
            raise CourseInputError(f"{name} must be a 1-D integer tensor of class indices.")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise CourseInputError(f"{name} holds classes outside 0..{num_classes - 1} (num_classes={num_classes}).")
    if truth.shape != predicted.shape:
        raise CourseInputError(f"truth and predicted must have one entry per example, got {len(truth)} and {len(predicted)}.")
    return torch.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


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
        check_choice(attribute, tuple(self.truth), "attribute")
        return confusion_matrix(self.truth[attribute], self.predicted[attribute], len(attribute_values(attribute)))


def zero_shot(model, tokenizer, scenes, *, phrasing: str = "full", size: int = shapes.DEFAULT_SIZE) -> ZeroShot:
    """Classify single-object scenes by their most similar caption among all single_object_candidates().   [nb 05]

    accuracy[attribute]: share of scenes whose top caption names the right colour / shape / position /
    background; accuracy["full"]: share whose top caption is exactly right.
    """
    scenes = check_scenes(scenes)
    truth = single_object_labels(scenes)
    cands = single_object_candidates(phrasing)
    sims = image_embeddings(model, shapes.render(scenes, size)) @ text_embeddings(model, tokenizer, cands.captions).T
    best = sims.argmax(1)
    predicted = {a: cands.labels[a][best] for a in cands.labels}
    truth = {a: truth[a] for a in cands.labels}
    accuracy = {a: float((predicted[a] == truth[a]).double().mean()) for a in cands.labels}
    accuracy["full"] = float(torch.stack([predicted[a] == truth[a] for a in cands.labels]).all(0).double().mean())
    return ZeroShot(truth, predicted, accuracy, [cands.captions[i] for i in best.tolist()], len(cands.captions))


def swap_candidates(scene: shapes.Scene, kind: str, phrasing: str = "full") -> list[str]:
    """Return the true caption first, then every caption that differs from it in one `kind` of change.   [nb 05]

    colour / shape: one object gets another colour / shape; position: one object moves to a free
    cell; background: another background; binding: two objects of different colours swap colours
    (same words, other pairing: a test of whether the model binds each colour to its shape).
    """
    if not isinstance(scene, shapes.Scene):
        raise CourseInputError(f"scene must be one shapes.Scene, got {type(scene).__name__}.")
    check_choice(kind, SWAPS, "swap kind")
    check_choice(phrasing, shapes.PHRASINGS, "phrasing")
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

    Scenes for which a kind makes no variant (binding with one colour) are left out of that kind;
    a kind that no scene allows gets NaN (there is nothing to count), never a made-up share.
    """
    scenes = check_scenes(scenes)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    for kind in kinds:
        check_choice(kind, SWAPS, "swap kind")
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
    num_scenes = check_int(num_scenes, "num_scenes", minimum=2, hint="half of them make the multi-object swap test")
    seed = check_int(seed, "seed", minimum=0)
    out = {}
    for split in ("test", "heldout"):
        result = zero_shot(model, tokenizer, shapes.sample_scenes(num_scenes, seed=seed, split=split, num_objects=1))
        out.update({f"zero_shot_{split}_single_{a}": round(v, 4) for a, v in result.accuracy.items()})
    multi = shapes.sample_scenes(num_scenes // 2, seed=seed + 1, split="test", num_objects=(2, shapes.MAX_OBJECTS))
    out.update({f"swap_test_multi_{k}": round(v, 4) for k, v in swap_accuracy(model, tokenizer, multi).items()})
    return out
