"""Edits with exact ground truth: an edit of the structure, its canonical instruction, its images and mask.   [nb 07-09]

An edit (colour, shape, background, add, remove) changes the structure, the scene is rendered
again, and the pixels that may change are exactly the supports (a_k > 0) of the objects the edit
touches (for a background edit: every pixel where the background shows); outside that mask the two
renderings are bitwise equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from course_lib import noise
from course_lib.shapes.captioning import caption, parse_caption
from course_lib.shapes.rendering import changed_support, check_size, render
from course_lib.shapes.sampling import check_num_objects, sample_scenes, split_generator
from course_lib.shapes.scene import Scene, ShapeObject, check_scene
from course_lib.shapes.world import ALL_PAIRS, BACKGROUNDS, COLOURS, DEFAULT_SIZE, EDIT_KINDS, HALF_SIZE_RANGE, \
    HELDOUT_PAIRS, JITTER, MAX_OBJECTS, POSITION_PHRASES, POSITIONS, SHAPES, TRAIN_PAIRS
from course_lib.validation import CourseInputError, check_choice, check_int

_NEEDS = {"colour": ("index", "value"), "shape": ("index", "value"), "background": ("value",), "add": ("obj",),
          "remove": ("index",)}


@dataclass(frozen=True)
class Edit:
    """One edit of a scene.   [nb 07-08]

    kind "colour": object `index` (reading order) gets colour `value`;  "shape": gets shape `value`;
    "background": the background becomes `value`;  "add": `obj` (a ShapeObject in a free cell) is
    added;  "remove": object `index` is removed.
    """

    kind: str
    index: int | None = None
    value: str | None = None
    obj: ShapeObject | None = None

    def __post_init__(self):
        check_choice(self.kind, EDIT_KINDS, "edit kind")
        need = _NEEDS[self.kind]
        for name in need:
            if getattr(self, name) is None:
                raise CourseInputError(f"a {self.kind!r} edit needs {' and '.join(need)}; {name} is missing.")
        if self.index is not None:
            object.__setattr__(self, "index", check_int(self.index, "edit index", minimum=0,
                                                        hint="an object of the scene, 0-based in reading order"))
        if self.value is not None and not isinstance(self.value, str):
            raise CourseInputError(f"an edit's value must be a name (a colour, shape or background), got {self.value!r}.")
        if self.kind == "add" and not isinstance(self.obj, ShapeObject):
            raise CourseInputError("an 'add' edit needs obj=ShapeObject(...).")


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    """Return the target scene: `scene` with `edit` applied (sizes and offsets kept).   [nb 07]"""
    if not isinstance(scene, Scene) or not isinstance(edit, Edit):
        raise CourseInputError("apply_edit(scene, edit) takes a Scene and an Edit.")
    objects = list(scene.objects)
    if edit.kind in ("colour", "shape", "remove") and not edit.index < len(objects):
        raise CourseInputError(f"edit index {edit.index!r} is out of range: the scene has {len(objects)} object(s), "
                               f"indexed 0..{len(objects) - 1} in reading order.")
    if edit.kind in ("colour", "shape"):  # the attribute of that name gets the new value
        check_choice(edit.value, COLOURS if edit.kind == "colour" else SHAPES, edit.kind)
        if getattr(objects[edit.index], edit.kind) == edit.value:
            article = "" if edit.kind == "colour" else "a "
            raise CourseInputError(f"object {edit.index} is already {article}{edit.value}: the edit would change nothing.")
        objects[edit.index] = replace(objects[edit.index], **{edit.kind: edit.value})
        return Scene(tuple(objects), scene.background)
    if edit.kind == "background":
        check_choice(edit.value, BACKGROUNDS, "background")
        if scene.background == edit.value:
            raise CourseInputError(f"the background is already {edit.value}: the edit would change nothing.")
        return Scene(tuple(objects), edit.value)
    if edit.kind == "remove":
        del objects[edit.index]
        return Scene(tuple(objects), scene.background)
    # add
    if len(objects) >= MAX_OBJECTS:
        raise CourseInputError(f"the scene already holds {MAX_OBJECTS} objects; remove one before adding.")
    if edit.obj.cell not in scene.free_cells():
        raise CourseInputError(f"the cell {edit.obj.position!r} is taken; free cells: "
                               f"{[POSITIONS[c] for c in scene.free_cells()]}.")
    return Scene(tuple(objects) + (edit.obj,), scene.background)


def instruction(scene: Scene, edit: Edit) -> str:
    """Return the edit as an English instruction, e.g. "make the red circle on the left blue".   [nb 07-09]

    The edit must apply to the scene (apply_edit's checks): an instruction that changes nothing or
    names an object the scene lacks is refused.
    """
    apply_edit(scene, edit)
    return _instruction(scene, edit)


def _instruction(scene: Scene, edit: Edit) -> str:
    if edit.kind == "background":
        return f"make the background {edit.value}"
    if edit.kind == "add":
        return f"add a {edit.obj.noun} {POSITION_PHRASES[edit.obj.cell]}"
    o = scene.objects[edit.index]
    name = f"the {o.noun} {POSITION_PHRASES[o.cell]}"
    return {"colour": f"make {name} {edit.value}", "shape": f"turn {name} into a {edit.value}",
            "remove": f"remove {name}"}[edit.kind]


def read_instruction(scene: Scene, text: str) -> Edit:
    """Return the Edit whose canonical instruction (instruction()) is `text`, for this scene; raise if none is.   [nb 09]"""
    check_scene(scene)
    if not isinstance(text, str):
        raise CourseInputError(f"text must be a canonical instruction (a str), got {type(text).__name__}.")
    candidates = [Edit("background", value=b) for b in BACKGROUNDS if b != scene.background]
    for i, o in enumerate(scene.objects):
        candidates += [Edit("colour", index=i, value=c) for c in COLOURS if c != o.colour]
        candidates += [Edit("shape", index=i, value=s) for s in SHAPES if s != o.shape]
        if len(scene.objects) > 1:
            candidates.append(Edit("remove", index=i))
    if len(scene.objects) < MAX_OBJECTS:
        candidates += [Edit("add", obj=ShapeObject(s, c, r, k)) for r, k in scene.free_cells() for c, s in ALL_PAIRS]
    for edit in candidates:
        if _instruction(scene, edit) == text:
            return edit
    raise CourseInputError(f"{text!r} is not a canonical instruction for this scene ({caption(scene, 'full')!r}); "
                           f"canonical instructions read like {_instruction(scene, candidates[0])!r}.")


def scene_from_caption(caption: str) -> Scene:
    """Return the Scene a "full", "objects" or "background_first" caption describes (default sizes, no offsets; black if unnamed)."""
    d = parse_caption(caption)
    return Scene.from_dict({"background": d["background"] or "black", "objects": d["objects"]})


def caption_edit(source_caption: str, target_caption: str) -> tuple[Scene, Edit]:
    """Return (source scene, the one Edit) that turns source_caption's scene into target_caption's.   [nb 09]

    Raises CourseInputError when the captions describe the same scene or differ by more than one edit.
    """
    source, target = scene_from_caption(source_caption), scene_from_caption(target_caption)
    src = {o.cell: o for o in source.objects}
    tgt = {o.cell: o for o in target.objects}
    changes = []
    if source.background != target.background:
        changes.append(Edit("background", value=target.background))
    for cell in sorted(set(src) | set(tgt)):
        a, b = src.get(cell), tgt.get(cell)
        index = next((i for i, o in enumerate(source.objects) if o.cell == cell), None)
        if a is None:
            changes.append(Edit("add", obj=ShapeObject(b.shape, b.colour, b.row, b.col)))
        elif b is None:
            changes.append(Edit("remove", index=index))
        elif a.colour != b.colour and a.shape == b.shape:
            changes.append(Edit("colour", index=index, value=b.colour))
        elif a.shape != b.shape and a.colour == b.colour:
            changes.append(Edit("shape", index=index, value=b.shape))
        elif a.shape != b.shape:
            changes.append(None)  # colour and shape at once: not one edit
    if len(changes) != 1 or changes[0] is None:
        what = "the same scene" if not changes else f"{len(changes)} changes"
        raise CourseInputError(f"{source_caption!r} -> {target_caption!r} is {what}, not one edit of the shapes world "
                               f"(a colour, a shape, the background, one object added or removed).")
    return source, changes[0]


def canonical_instruction(source_caption: str, target_caption: str) -> str:
    """Return the canonical instruction (instruction) of the one edit between two captions.   [nb 09]"""
    scene, edit = caption_edit(source_caption, target_caption)
    return _instruction(scene, edit)


@dataclass
class EditResult:
    """An edit with its exact ground truth: the images, the mask of what may change, and the captions.   [nb 07-08]

    source_image, target_image: (3, S, S) in [-1, 1]; mask: (S, S) bool, True where the edit may change
    pixels (outside it the two images are equal); captions in the "full" phrasing.
    """

    source: Scene
    target: Scene
    edit: Edit
    source_image: torch.Tensor
    target_image: torch.Tensor
    mask: torch.Tensor
    source_caption: str
    target_caption: str
    instruction: str
    extra: dict = field(default_factory=dict)


def make_edit(scene: Scene, edit: Edit, size: int = DEFAULT_SIZE) -> EditResult:
    """Apply `edit` and render source, target and the edit mask, with source and target captions.   [nb 07-08]"""
    size = check_size(size)
    target = apply_edit(scene, edit)
    images = render([scene, target], size)
    return EditResult(scene, target, edit, images[0], images[1], changed_support(scene, target, size),
                      caption(scene, "full"), caption(target, "full"), _instruction(scene, edit))


def possible_edit_kinds(scene: Scene) -> list[str]:
    """Return the edit kinds random_edit can draw for this scene (add needs a free slot, remove two objects)."""
    check_scene(scene)
    return _possible_kinds(scene)


def _possible_kinds(scene: Scene) -> list[str]:
    kinds = ["background"]
    if scene.objects:
        kinds[:0] = ["colour", "shape"]
    if len(scene.objects) < MAX_OBJECTS:
        kinds.append("add")
    if len(scene.objects) >= 2:
        kinds.append("remove")
    return kinds


def _check_kinds(kinds) -> tuple[str, ...]:
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not kinds:
        raise CourseInputError(f"kinds must name at least one edit kind of {EDIT_KINDS}.")
    for k in kinds:
        check_choice(k, EDIT_KINDS, "edit kind")
    return kinds


def random_edit(scene: Scene, generator: torch.Generator | int | None = None, kinds=EDIT_KINDS, *,
                allow_heldout: bool = False) -> Edit:
    """Draw a valid edit of one of `kinds` for the scene (uniform over kinds, objects and new values).   [nb 07]

    With allow_heldout=False (the default) no edit creates a held-out colour-shape pair. generator:
    a torch.Generator, an int seed or None.
    """
    check_scene(scene)
    return _random_edit(scene, noise.as_generator(generator), _check_kinds(kinds), allow_heldout)


def _random_edit(scene: Scene, generator: torch.Generator | None, kinds: tuple[str, ...], allow_heldout: bool) -> Edit:
    u = torch.rand(8, generator=generator, dtype=torch.float64).tolist()

    def pick(options, ui):
        return options[min(int(ui * len(options)), len(options) - 1)]

    def ok(colour, shape):
        return allow_heldout or (colour, shape) not in HELDOUT_PAIRS

    candidates = []  # (kind, index, value) triples that are valid, per kind
    for kind in [k for k in kinds if k in _possible_kinds(scene)]:
        if kind == "colour":
            options = [(i, c) for i, o in enumerate(scene.objects) for c in COLOURS if c != o.colour and ok(c, o.shape)]
        elif kind == "shape":
            options = [(i, s) for i, o in enumerate(scene.objects) for s in SHAPES if s != o.shape and ok(o.colour, s)]
        elif kind == "background":
            options = [(None, b) for b in BACKGROUNDS if b != scene.background]
        elif kind == "remove":
            options = [(i, None) for i in range(len(scene.objects))]
        else:
            options = [(None, cell) for cell in scene.free_cells()]
        if options:
            candidates.append((kind, options))
    if not candidates:
        raise CourseInputError(f"no edit of kinds {tuple(kinds)} applies to this scene; "
                               f"possible kinds here: {_possible_kinds(scene)}.")
    kind, options = pick(candidates, u[0])
    index, value = pick(options, u[1])
    if kind == "add":
        colour, shape = pick(TRAIN_PAIRS + (HELDOUT_PAIRS if allow_heldout else ()), u[2])
        half = HALF_SIZE_RANGE[0] + (HALF_SIZE_RANGE[1] - HALF_SIZE_RANGE[0]) * u[3]
        obj = ShapeObject(shape, colour, value[0], value[1], half, JITTER * (2 * u[4] - 1), JITTER * (2 * u[5] - 1))
        return Edit("add", obj=obj)
    return Edit(kind, index=index, value=value)


def edit_cases(n: int, seed: int = 0, *, kinds=EDIT_KINDS, size: int = DEFAULT_SIZE, split: str = "test",
               num_objects=(1, MAX_OBJECTS), allow_heldout: bool = False) -> list[EditResult]:
    """Return n edit cases, kinds in turn (kinds[i % len(kinds)]), deterministic by (seed, split).   [nb 07-08]

    Scenes come from `split` ("test" by default: the training law, but never the training seeds'
    scenes); a scene that cannot take the next kind (add to a full scene, remove from a one-object
    scene) is skipped. edit_cases(m) is the first m of edit_cases(n) for m < n. This is the ShapesEdit
    benchmark's source.
    """
    n = check_int(n, "n", minimum=0, hint="the number of edit cases")
    kinds = _check_kinds(kinds)
    size = check_size(size)
    lo, hi = check_num_objects(num_objects)
    if "remove" in kinds and hi < 2 or "add" in kinds and lo >= MAX_OBJECTS:
        raise CourseInputError(f"num_objects={num_objects!r} leaves no scene that can take every kind in {tuple(kinds)}: "
                               f"'remove' needs scenes of 2+ objects, 'add' scenes of at most {MAX_OBJECTS - 1}.")
    g = split_generator(seed, split)
    g.manual_seed(g.initial_seed() + 1_000_003)  # a stream apart from sample_scenes(seed=seed, split=split)
    cases = []
    while len(cases) < n:
        for scene in sample_scenes(64, split=split, num_objects=num_objects, generator=g):  # fixed chunks: a prefix of
            # edit_cases(n) is edit_cases(m) for m < n
            if len(cases) == n:
                break
            kind = kinds[len(cases) % len(kinds)]
            if kind not in _possible_kinds(scene):
                continue
            cases.append(make_edit(scene, _random_edit(scene, g, (kind,), allow_heldout), size))
    return cases
