"""The writer's lexicon: colour names from a real survey mapped onto the world's colours, and the word lists of each slot.   [nb 09]

Colours. matplotlib ships two real lists of colour names with their RGB: the xkcd colour survey
(Randall Munroe, 2010: about 222,500 people named 5 million RGB samples; the 949 most common
names, `matplotlib.colors.XKCD_COLORS`) and the CSS Color Module Level 4 named colours (148,
`matplotlib.colors.CSS4_COLORS`). A name is mapped to one of the world's four colours, or refused:

1. a name whose last word is a colour category (COLOUR_CATEGORIES: the world's four, and the
   categories the world lacks, "orange", "purple", "pink", "grey", ...) belongs to that category:
   the survey's people named it so ("forest green" -> green, "burnt orange" -> orange, refused);
2. any other name ("crimson", "navy", "salmon") is placed by its NEIGHBOURS nearest named
   survey colours of rule 1 in OKLab, a perceptual colour space (Ottosson 2020), and takes their
   category when at least MAJORITY of them agree; otherwise it lies between categories and is
   refused as ambiguous (the stated margin).

So "crimson" (7 of its 9 neighbours are reds) is red, "navy" (6 of 9 blues) is blue, "salmon"
(6 pinks) is pink, which the world lacks, and "amber" (5 yellows, 4 oranges) is refused as lying
between yellow and orange. Which names the writer's training data may use is fixed by a hash of
the name (LEXICON_SPLIT): the rest are held out, so a measured name is one no training example used.

Common English words: the word frequencies pyspellchecker ships (its English list, counted in the
OpenSubtitles2018 corpus of film and TV subtitles; Lison and Tiedemann 2016). A word people write at
least COMMON_RATE of the time is one a writer spelled on purpose ("team", "scratch", "seen"), so the
reader never turns it into a word it would refuse ("teal", "stretch", "seven"), and corrects it at all
only when its correction is written at least TYPO_ODDS times as often (a noisy-channel reading with
the words' frequencies as the prior: a slip that happens to spell another real word is rare, so the
word typed must be far rarer than the word meant). "comes" is not "cones", "tower" not "lower",
"bed" not "red"; "wed" (47 times rarer than "red") and "lest" (200 times rarer than "left") are.

Shapes, positions, counts and backgrounds: SHAPE_NOUNS, UNSUPPORTED_SHAPES, POSITION_TERMS,
COUNT_TERMS and BACKGROUND_TERMS are written here by hand; their sources are named beside them.
"""

from __future__ import annotations

import collections
import functools
import re
import zlib
from dataclasses import dataclass

import numpy as np

from course_lib import shapes
from course_lib.language.words import COLOUR_WORDS
from course_lib.validation import CourseInputError

NEIGHBOURS = 9
MAJORITY = 6  # of NEIGHBOURS: the margin; fewer agreeing neighbours and the name lies between categories
WORLD_COLOURS = tuple(shapes.COLOURS)
# Colour categories the survey's names end with that the world has no object colour for (Berlin & Kay's basic terms,
# and the next most common category words of the survey's names).
OTHER_CATEGORIES = ("orange", "purple", "pink", "brown", "grey", "gray", "black", "white", "teal", "cyan", "turquoise",
                    "aqua", "magenta", "violet", "lavender", "lilac", "indigo", "beige", "tan", "olive", "maroon", "mauve",
                    "khaki", "periwinkle", "fuchsia", "peach", "cream", "burgundy")
COLOUR_CATEGORIES = WORLD_COLOURS + OTHER_CATEGORIES
ACHROMATIC = {"black": "black", "white": "white", "grey": "grey", "gray": "grey"}  # categories that are backgrounds
LEXICON_SPLITS = ("train", "heldout")


def oklab(rgb) -> np.ndarray:
    """Return OKLab (L, a, b) of sRGB colours in [0, 1], shape (..., 3): linearise, LMS, cube root, opponent axes.   [Ottosson 2020, nb 09]"""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.shape[-1:] != (3,) or not np.all(np.isfinite(rgb)) or rgb.min() < 0 or rgb.max() > 1:
        raise CourseInputError(f"rgb must hold sRGB triples in [0, 1] (last axis 3), got shape {rgb.shape}.")
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lms = linear @ np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                             [0.2119034982, 0.6806995451, 0.1073969566],
                             [0.0883024619, 0.2817188376, 0.6299787005]]).T
    return np.cbrt(lms) @ np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                                    [1.9779984951, -2.4285922050, 0.4505937099],
                                    [0.0259040371, 0.7827717662, -0.8086757660]]).T


@dataclass(frozen=True)
class ColourName:
    """A colour name of the lexicon: its source, RGB, category, and the world colour it maps to (None: refused)."""

    name: str
    source: str  # "xkcd" or "css4"; "hex" for a hex code, "phrase" for a name read with a category word after it
    rgb: tuple[float, float, float]
    category: str | None  # a COLOUR_CATEGORIES word, or None when the neighbours disagree
    world: str | None  # one of WORLD_COLOURS, or None
    votes: tuple[tuple[str, int], ...] = ()  # the neighbours' categories (rule 2), most common first
    split: str = "train"


def _names() -> dict[str, tuple[str, tuple]]:
    import matplotlib.colors as mc

    out = {}
    for key, hex_ in mc.CSS4_COLORS.items():
        out[key] = ("css4", mc.to_rgb(hex_))
    for key, hex_ in mc.XKCD_COLORS.items():  # the survey wins where both name a colour
        name = " ".join(key.removeprefix("xkcd:").replace("/", " ").replace("'", "").split())
        out[name] = ("xkcd", mc.to_rgb(hex_))
    return out


_ALWAYS_TRAIN = set(COLOUR_CATEGORIES) | {w for ws in COLOUR_WORDS.values() for w in ws}


def lexicon_split(name: str) -> str:
    """Return "train" or "heldout" for a name: a CRC-32 of the name, even -> train (category words and COLOUR_WORDS: train)."""
    if not isinstance(name, str):
        raise CourseInputError(f"name must be a string, got {type(name).__name__}.")
    return "train" if name in _ALWAYS_TRAIN or zlib.crc32(name.encode()) % 2 == 0 else "heldout"


@functools.cache
def _labelled() -> tuple[list[tuple[str, tuple, str]], np.ndarray]:
    # rule 1's survey names (name, rgb, category) and their OKLab points: the neighbours rule 2 votes among
    names = _names()
    labelled = [(n, names[n][1], n.split()[-1]) for n in names if n.split()[-1] in COLOUR_CATEGORIES and names[n][0] == "xkcd"]
    return labelled, oklab(np.array([rgb for _, rgb, _ in labelled]))


def _vote(name: str, rgb) -> tuple[str | None, tuple]:
    # rule 2: the categories of the NEIGHBOURS nearest rule-1 names (the name itself left out); a category if MAJORITY agree
    labelled, points = _labelled()
    d = np.linalg.norm(points - oklab(np.array(rgb)), axis=1)
    nearest = [i for i in np.argsort(d, kind="stable") if labelled[i][0] != name][:NEIGHBOURS]
    votes = tuple(collections.Counter(labelled[i][2] for i in nearest).most_common())
    return (votes[0][0] if votes[0][1] >= MAJORITY else None), votes


COMMON_RATE = 1e-6  # once in a million words of the subtitle corpus
# A common word is read as a typo only of a word written at least this many times as often. Chosen on the dev to
# final6 sets' hand-typed lines (benchmarks/bench_writer.py, 2026-12-07): at 30 rather than the earlier rule (a word
# 20 times in a million kept only when 3 times commoner than its correction) 10 more of their 1,706 requests and 3
# more of their 1,814 instructions came out exact, and one-typo exact did not drop on any set; in those 3,520 lines a
# real word was typed for a slot word almost never, while "tower", "sent", "close", "twin", "bed" were meant.
TYPO_ODDS = 30


@functools.cache
def _english_frequency():
    from spellchecker import SpellChecker  # pyspellchecker: word frequencies of the OpenSubtitles2018 corpus

    return SpellChecker(language="en").word_frequency


def word_rate(word: str) -> float:
    """Return how often `word` is written in film subtitles (OpenSubtitles2018): a fraction of all words, 0 if never."""
    if not isinstance(word, str):
        raise CourseInputError(f"word must be a string, got {type(word).__name__}.")
    frequency = _english_frequency()
    return frequency[word.lower()] / frequency.total_words


WORD_RATE = 5e-8  # five times in a hundred million words: a word the subtitles hold, rather than a slip ("blok", "thig")


def english_word(word: str) -> bool:
    """Return True when the subtitle corpus holds `word` at least WORD_RATE of the time ("zigzag", "squiggle")."""
    return word_rate(word) >= WORD_RATE


def common_word(word: str) -> bool:
    """Return True when `word` is a common English word (written at least COMMON_RATE of the time in film subtitles)."""
    return word_rate(word) >= COMMON_RATE


def meant_as_typed(word: str, correction: str) -> bool:
    """Return True when a common English word is likelier typed on purpose than as a slip for `correction`.

    A common word (common_word) is meant unless `correction` is written at least TYPO_ODDS times as often:
    "comes" (not "cones"), "tower" (not "lower"), "bell" (not "ball"); "wed" is read as "red" (47 times
    as common) and "lest" as "left". A word that is no common word ("lfet", "bleu") is always corrected.
    """
    for value, name in ((word, "word"), (correction, "correction")):
        if not isinstance(value, str):
            raise CourseInputError(f"{name} must be a string, got {type(value).__name__}.")
    if inflection_of(word, correction):
        return False  # "removed", "wants", "turns": the word's own stem, which the reader knows
    return common_word(word) and word_rate(correction) < TYPO_ODDS * word_rate(word)


IRREGULAR = {"drew": "draw", "threw": "throw", "made": "make"}  # past tenses one letter from their verb


def inflection_of(word: str, stem: str) -> bool:
    """Return True when `word` is a regular inflection of `stem` ("removes", "removed", "removing", "boxes") or one of
    the IRREGULAR past tenses: the same word, which the reader reads as its stem."""
    if not isinstance(word, str) or not isinstance(stem, str):
        raise CourseInputError("inflection_of(word, stem) takes two strings.")
    base = stem[:-1] if stem.endswith("e") else stem
    return IRREGULAR.get(word) == stem or word in {stem + "s", stem + "es", stem + "d", stem + "ed", stem + "ing",
                                                     base + "ing", base + "ed", stem + stem[-1:] + "ed",
                                                     stem + stem[-1:] + "ing"}


@functools.cache
def colour_lexicon() -> dict[str, ColourName]:
    """Return every colour name of the xkcd survey and CSS4 with the world colour it maps to (None: refused).   [nb 09]"""
    out = {}
    for name, (source, rgb) in _names().items():
        last = name.split()[-1]
        category, votes = (last, ()) if last in COLOUR_CATEGORIES else _vote(name, rgb)
        world = category if category in WORLD_COLOURS else None
        out[name] = ColourName(name, source, tuple(round(c, 4) for c in rgb), category, world, votes, lexicon_split(name))
    return out


HEX_CODE = re.compile(r"^#(?:[0-9a-f]{6}|[0-9a-f]{3})$")


@functools.cache
def hex_colour(code: str) -> ColourName | None:
    """Return the entry of a hex colour code ("#ff0000", "#f00"), placed by rule 2 like an unnamed survey colour; None if no code.

    A code names an RGB, not a word, so it has no category of its own: its NEIGHBOURS nearest survey
    names vote ("#ff0000" -> red, "#800080" -> purple, refused).
    """
    if not isinstance(code, str):
        raise CourseInputError(f"code must be a string, got {type(code).__name__}.")
    code = code.strip().lower()
    if not HEX_CODE.match(code):
        return None
    digits = code[1:] if len(code) == 7 else "".join(c * 2 for c in code[1:])
    rgb = tuple(int(digits[k:k + 2], 16) / 255 for k in (0, 2, 4))
    category, votes = _vote(code, rgb)
    world = category if category in WORLD_COLOURS else None
    return ColourName(code, "hex", tuple(round(c, 4) for c in rgb), category, world, votes, "heldout")


def colour_of(name: str) -> ColourName | None:
    """Return the lexicon entry of a colour name (lower case, words split by single spaces) or hex code, or None if neither."""
    if not isinstance(name, str):
        raise CourseInputError(f"name must be a string, got {type(name).__name__}.")
    key = " ".join(name.lower().split())
    return colour_lexicon().get(key) or (hex_colour(key) if key.startswith("#") else None)


def colour_names(world: str | None = None, split: str | None = None) -> list[str]:
    """Return the lexicon's names (sorted) that map to `world` (a world colour; None: every name), of `split` (None: both)."""
    if world is not None and world not in WORLD_COLOURS:
        raise CourseInputError(f"world must be one of {WORLD_COLOURS} or None, got {world!r}.")
    if split is not None and split not in LEXICON_SPLITS:
        raise CourseInputError(f"split must be one of {LEXICON_SPLITS} or None, got {split!r}.")
    return sorted(n for n, e in colour_lexicon().items()
                  if (world is None or e.world == world) and (split is None or e.split == split))


def why_not(entry: ColourName) -> str:
    """Return one plain sentence saying why a refused colour name is not one of the world's colours."""
    if not isinstance(entry, ColourName):
        raise CourseInputError(f"entry must be a lexicon.ColourName, got {type(entry).__name__}.")
    world = ", ".join(WORLD_COLOURS[:-1]) + " or " + WORLD_COLOURS[-1]
    if entry.category is None:
        cats = " and ".join(c for c, _ in entry.votes[:2])
        return f"{entry.name!r} lies between {cats} (of its {NEIGHBOURS} nearest named colours, no {MAJORITY} agree); " \
               f"objects can be {world}."
    if entry.category in ACHROMATIC:
        return f"{entry.name!r} is {ACHROMATIC[entry.category]}, a background colour here; objects can be {world}."
    shown = "" if entry.category == entry.name else f" ({entry.category})"
    return f"the shapes world has no {entry.name}{shown}; objects can be {world}."


# Shape nouns (singular, plural) of the world's three shapes: everyday English names of the flat figures, as in the
# Oxford Learner's Dictionary's senses of each word (a ball/disc/dot is round, a box/block/tile/cube has square faces,
# a wedge/pyramid has a triangular outline seen flat).
SHAPE_NOUNS = {
    "circle": ("circle", "circles", "ball", "balls", "disc", "discs", "disk", "disks", "dot", "dots", "orb", "orbs",
               "sphere", "spheres", "round", "rounds", "blob", "blobs", "spot", "spots", "bubble", "bubbles",
               "coin", "coins"),
    "square": ("square", "squares", "box", "boxes", "block", "blocks", "tile", "tiles", "cube", "cubes", "quad", "quads"),
    "triangle": ("triangle", "triangles", "wedge", "wedges", "pyramid", "pyramids", "tri", "tris", "cone", "cones"),
}
# Flat shapes the world does not draw (the named polygons and figures of an elementary geometry syllabus, and the
# common icon shapes).
UNSUPPORTED_SHAPES = ("hexagon", "pentagon", "octagon", "heptagon", "polygon", "star", "heart", "oval", "ellipse", "cross",
                      "diamond", "rhombus", "trapezoid", "trapezium", "parallelogram", "rectangle", "crescent", "moon",
                      "arrow", "line", "spiral", "ring", "donut", "doughnut", "cylinder", "kite", "semicircle", "lozenge",
                      "cloud", "letter", "number", "flower", "tree", "house", "car", "cat", "dog", "person")
# Homophones of the slot words, as voice dictation mishears them (the reader reads one as its slot word only where
# that slot alone fits: "a blew circle", "the bottom write corner").
SOUND_ALIKE = {"blew": "blue", "read": "red", "write": "right", "rite": "right", "wright": "right"}
MADE_UP_NOUNS = ("thingy", "thingie", "thingamajig", "thingummy", "whatsit", "doodad", "doohickey")  # read as "thing"
VAGUE_NOUNS = ("thing", "things", "shape", "shapes", "object", "objects", "item", "items", "something", "one", "ones",
               "figure", "figures", "form", "forms") + MADE_UP_NOUNS
# The grid's words: rows and columns (shapes.ROWS, shapes.COLS) and their everyday synonyms.
POSITION_TERMS = {"top": "top", "upper": "top", "up": "top", "topmost": "top", "uppermost": "top", "bottom": "bottom", "lower": "bottom",
                  "down": "bottom", "bottommost": "bottom", "lowermost": "bottom", "nethermost": "bottom", "base": "bottom", "left": "left", "leftmost": "left",
                  "lefthand": "left", "right": "right", "rightmost": "right", "righthand": "right", "middle": "middle",
                  "centre": "middle", "center": "middle", "central": "middle", "centred": "middle",
                  "centered": "middle", "mid": "middle",
                  # the compass points of a map with north up, as people name a picture's corners ("north-east corner")
                  "north": "top", "south": "bottom", "east": "right", "west": "left"}
# Counts: the English cardinals and their numerals; more than shapes.MAX_OBJECTS objects is refused.
COUNT_TERMS = {"a": 1, "an": 1, "one": 1, "single": 1, "1": 1, "two": 2, "2": 2, "pair": 2, "couple": 2, "both": 2,
               "three": 3, "3": 3, "four": 4, "4": 4, "five": 5, "5": 5, "six": 6, "6": 6, "seven": 7, "7": 7,
               "eight": 8, "8": 8, "nine": 9, "9": 9, "ten": 10, "10": 10, "dozen": 12, "many": 10, "several": 4,
               "lots": 10, "hundred": 100, "trio": 3, "checkerboard": 5, "chequerboard": 5, "chessboard": 5,
               "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "fifty": 50, "dozens": 24, "hundreds": 200,
               "thousand": 1000, **{str(k): k for k in range(11, 21)}}
BACKGROUND_NOUNS = ("background", "backdrop", "bg", "backgrounds", "canvas", "back", "walls", "wallpaper")
BACKGROUND_TERMS = {"dark": "black", "darkness": "black", "night": "black", "light": "white", "blank": "white"}
