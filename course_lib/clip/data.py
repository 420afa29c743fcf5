"""Fresh image-caption pairs every step, each scene with an edited twin, and which captions are true of which scenes.   [nb 05]"""

from __future__ import annotations

import torch

from course_lib import noise, shapes, text
from course_lib.validation import CourseInputError, check_choice, check_int, check_number

# How often each kind of edit makes a twin (among the kinds the scene allows): shapes are the
# hardest attribute to see at 32 x 32, so shape twins come twice as often.
TWIN_EDITS = {"colour": 1.0, "shape": 2.0, "background": 0.5, "add": 1.0, "remove": 1.0}


def check_scenes(scenes, name: str = "scenes", *, allow_empty: bool = False) -> list[shapes.Scene]:
    """Return scenes as a list of shapes.Scene (one Scene becomes a list of one), non-empty unless allowed, else raise."""
    try:
        scenes = [scenes] if isinstance(scenes, shapes.Scene) else list(scenes)
    except TypeError:
        scenes = None
    if scenes is None or not all(isinstance(s, shapes.Scene) for s in scenes):
        raise CourseInputError(f"{name} must be a list of shapes.Scene (e.g. shapes.sample_scenes(n)).")
    if not scenes and not allow_empty:
        raise CourseInputError(f"{name} is empty: every figure would be a mean over nothing; pass at least one scene.")
    return scenes


def _check_phrasings(phrasings) -> tuple[str, ...]:
    phrasings = (phrasings,) if isinstance(phrasings, str) else tuple(phrasings)
    if not phrasings:
        raise CourseInputError(f"phrasings is empty; pass some of {shapes.PHRASINGS}.")
    for p in phrasings:
        check_choice(p, shapes.PHRASINGS, "phrasing")
    return phrasings


def _check_kinds(kinds) -> dict[str, float]:
    weights = dict(kinds) if isinstance(kinds, dict) else dict.fromkeys((kinds,) if isinstance(kinds, str) else kinds, 1.0)
    for kind, weight in weights.items():
        check_choice(kind, shapes.EDIT_KINDS, "edit kind")
        weights[kind] = check_number(weight, f"the weight of {kind!r}", low=0, hint="how often that kind of twin is made")
    if not weights or not sum(weights.values()):
        raise CourseInputError(f"kinds={kinds!r} gives no edit a positive weight; pass e.g. clip.TWIN_EDITS.")
    return weights


def _phrasing_for(scenes, u: float, phrasings) -> str:
    names = [p for p in phrasings if p != "relation" or all(len(s.objects) == 2 for s in scenes)] or ["full"]
    return names[min(int(u * len(names)), len(names) - 1)]


def twin_scenes(scenes, generator=None, phrasings=shapes.PHRASINGS,
                kinds=TWIN_EDITS) -> tuple[list[shapes.Scene], list[str]]:
    """Return [scene, edited twin, ...] and their captions: each twin differs from its scene by one edit.   [nb 05]

    The edit (shapes.random_edit, kind drawn with the weights of `kinds`, a dict kind -> weight or a
    list of kinds) changes one colour, one shape, the background, or adds or removes an object
    (never making a held-out colour-shape pair); scene and twin are captioned in the same phrasing, so
    their captions differ in a word or a phrase. In a contrastive batch each is the other's hardest
    negative. generator: a torch.Generator, an int seed, or None.
    """
    scenes, generator = check_scenes(scenes, allow_empty=True), noise.as_generator(generator)
    phrasings, weights = _check_phrasings(phrasings), _check_kinds(kinds)
    out, captions = [], []
    u = torch.rand(len(scenes), 2, generator=generator).tolist()
    for i, (scene, (ui, uk)) in enumerate(zip(scenes, u)):
        allowed = [k for k in weights if weights[k] > 0 and k in shapes.possible_edit_kinds(scene)]
        if not allowed:
            raise CourseInputError(f"scene {i} ({shapes.caption(scene)!r}) takes none of the edit kinds "
                                   f"{tuple(weights)}; it takes {shapes.possible_edit_kinds(scene)}.")
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
    padded to tokenizer.model_max_length as the SD pipeline pads. data() takes a torch.Generator or
    an int seed.
    """
    text.check_tokenizer(tokenizer)
    check_choice(split, ("train", "test"), "split")
    batch_size = check_int(batch_size, "batch_size", minimum=2, hint="a contrastive batch needs negatives")
    if twins and batch_size % 2:
        raise CourseInputError(f"batch_size must be even with twins=True (scenes and their twins), got {batch_size}.")
    shapes.sample_scenes(0, split=split, num_objects=num_objects)  # checks num_objects at the door
    phrasings, size = _check_phrasings(phrasings), shapes.check_size(size)

    def data(generator) -> dict:
        generator = noise.as_generator(generator)
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
    scenes = check_scenes(scenes)
    captions = [captions] if isinstance(captions, str) else list(captions)
    if len(scenes) != len(captions):
        raise CourseInputError(f"need one caption per scene, got {len(scenes)} scenes and {len(captions)} captions.")
    if not all(isinstance(c, str) for c in captions):
        raise CourseInputError("captions must be strings, e.g. from shapes.caption(scene).")
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
