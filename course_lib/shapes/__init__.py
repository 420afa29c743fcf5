"""The shapes world: captioned scenes of coloured shapes whose edits have exact ground truth.   [notebooks 04-08]

A scene is one to three objects on a plain background. Each object is a shape (circle, square,
triangle) with a colour (red, green, blue, yellow), sits in one cell of a 3 x 3 grid (its position
word: "top left", "middle", ...), with a small random size and offset inside the cell. Objects in
different cells never overlap, so every pixel is the background blended with at most the objects
whose coverage reaches it:

    image = background * (1 - sum_k a_k) + sum_k a_k * colour_k,      a_k = clamp(0.5 - d_k, 0, 1)

where d_k is the signed distance (in pixels) from the pixel centre to object k's outline, a cheap
anti-aliasing. An edit (colour, shape, background, add, remove) changes the structure, the scene is
rendered again, and the pixels that may change are exactly the supports (a_k > 0) of the objects the
edit touches (for a background edit: every pixel where the background shows). Outside that mask the
two renderings are bitwise equal; tests/test_shapes.py asserts it.

What the rest of the course takes from here (`from course_lib import shapes`, then `shapes.name`):
    sample_scenes(n, seed, split)      structured scenes; split "train"/"test" never use HELDOUT_PAIRS,
                                       "heldout" has at least one held-out colour-shape pair per scene
    render(scenes, size)               (B, 3, S, S) images in [-1, 1], fast and vectorised
    object_masks(scenes, size)         (B, MAX_OBJECTS, S, S) coverage of each object slot
    caption(scene, phrasing)           English captions, a few phrasings (PHRASINGS)
    make_dataset(n, seed, split)       images + scenes + captions, in one call          (nb 04-06)
    Edit, apply_edit, make_edit        an edit -> target scene, images, edit mask, captions   (nb 07-08)
    random_edit, edit_cases            random valid edits, and a balanced list of edit cases (ShapesEdit)
    read_scene, judge                  read colour, shape and position back from an image  (nb 06-08)

Positions are fractions of the image side (x to the right, y down), so any image size works; a
size of 32 gives objects about 6-8 pixels across.

The package, one module per section, in the order the course meets them:
    world        the vocabulary: SHAPES, COLOURS, BACKGROUNDS, the grid and its position words
    scene        ShapeObject and Scene, the structure everything else is made from
    sampling     sample_scenes, split_generator: random scenes by (seed, split)
    rendering    render, object_masks, signed_distance, changed_support
    captioning   caption, captions, random_captions, parse_caption, vocabulary
    datasets     make_dataset, image_batches
    edits        Edit, apply_edit, instruction, make_edit, random_edit, edit_cases, caption_edit
    reading      read_scene, judge: an image read back
"""

from course_lib.shapes.captioning import caption, caption_objects, captions, join_phrases, objects_phrase, \
    parse_caption, random_captions, vocabulary
from course_lib.shapes.datasets import ShapesDataset, image_batches, make_dataset
from course_lib.shapes.edits import Edit, EditResult, apply_edit, canonical_instruction, caption_edit, edit_cases, \
    instruction, make_edit, possible_edit_kinds, random_edit, read_instruction, scene_from_caption
from course_lib.shapes.reading import MIN_AREA, RANGE_SLACK, TEMPLATE_BLURS, Judgement, judge, read_scene
from course_lib.shapes.rendering import changed_support, check_size, object_masks, render, shape_distance, \
    signed_distance
from course_lib.shapes.sampling import check_num_objects, sample_scenes, split_generator
from course_lib.shapes.scene import Scene, ShapeObject, check_scene, check_scenes
from course_lib.shapes.world import ALL_PAIRS, BACKGROUNDS, CELL_OF_POSITION, COLOURS, COLS, DEFAULT_SIZE, EDIT_KINDS, \
    GRID, HALF_SIZE_RANGE, HELDOUT_PAIRS, JITTER, MAX_OBJECTS, PHRASINGS, POSITION_PHRASES, POSITIONS, ROWS, SHAPES, \
    SPLITS, TRAIN_PAIRS, cell_centre

__all__ = [
    # world
    "SHAPES", "COLOURS", "BACKGROUNDS", "HELDOUT_PAIRS", "ALL_PAIRS", "TRAIN_PAIRS", "SPLITS", "ROWS", "COLS", "GRID",
    "POSITION_PHRASES", "POSITIONS", "CELL_OF_POSITION", "MAX_OBJECTS", "HALF_SIZE_RANGE", "JITTER", "DEFAULT_SIZE",
    "PHRASINGS", "EDIT_KINDS", "cell_centre",
    # scene
    "ShapeObject", "Scene", "check_scene", "check_scenes",
    # sampling
    "check_num_objects", "split_generator", "sample_scenes",
    # rendering
    "check_size", "shape_distance", "signed_distance", "render", "object_masks", "changed_support",
    # captioning
    "join_phrases", "objects_phrase", "caption", "captions", "random_captions", "vocabulary", "parse_caption",
    "caption_objects",
    # datasets
    "ShapesDataset", "make_dataset", "image_batches",
    # edits
    "Edit", "apply_edit", "instruction", "read_instruction", "scene_from_caption", "caption_edit",
    "canonical_instruction", "EditResult", "make_edit", "possible_edit_kinds", "random_edit", "edit_cases",
    # reading
    "TEMPLATE_BLURS", "MIN_AREA", "RANGE_SLACK", "read_scene", "Judgement", "judge",
]
