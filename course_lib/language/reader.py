"""The writer's reader: a request or instruction read word by word against the lexicon, before the model sees it.   [nb 09]

A tiny language model trained on a few thousand phrasings cannot know that "cobalt" is a blue or
that "I'd like" names nothing. The reader knows: it splits the text into words, corrects typos by
characters (Damerau-Levenshtein distance 1, or 2 for words of 7+ letters, to one unique nearest
word), finds the lexicon's words in their slots and rewrites them into the world's own words:

    "Could you draw me a cobalt sphere in the upper-left corner, thanks!"
      -> "a blue circle in the top left"                                    (what the model reads)

    colour slot      a colour name before a shape noun ("a cobalt sphere"), after a colour verb's
                     object ("make it lemon"), or one of the category words anywhere ("red")
    shape slot       a shape noun (SHAPE_NOUNS), or an unknown word right after a colour
    position slot    a run of grid words ("upper-left corner" -> "in the top left")
    count slot       a count word before an object ("two", "2", "a pair of")
    background slot  a colour before "background"/"backdrop", or after "on"/"against" at the end

Every other word is a filler and passes, dropped from what the model reads ("please", "I'd like",
"nice", "thanks"). Hex codes ("#ff0000"), clock faces ("at 3 o'clock"), rows, columns and diagonals
("the top row", "first row third column", "down the left side"), compass corners and chat
abbreviations ("sq", "btm rt") are read too, and so are self-corrections ("the top left, no wait,
the top right": the value after the marker replaces the last one of its kind), numbers that number
a step or a label ("Step 4:", "Table 3 -", "No. 2", "Q4"), similes ("a yellow circle like a sun"), a
radio call's "over", a purpose that names nothing drawn ("for the night shift", "For ten points"),
what an object stands for ("the disco ball is a yellow circle"), a row and a column said apart for
one object ("Top shelf, far right: one blue circle"), phrasal removes ("comes off", "do without")
and an object named twice ("the lower one, the circle, should be red"), numbers no object follows
("Homework 5", "10/10", "#12", "stardate 4102.7"), a count before a list of that many objects ("three
friends: a red circle ..., ..."), a colour a thing goes ("goes green", "must go golden"), a paint's
coat or finish, a field left empty ("Background: N/A") and more removes ("evict", "has left the
building", "you may leave", "is sent off"). A common English word (lexicon.common_word: "team",
"seen", "scratch") is never corrected into a word the reader would refuse ("teal", "seven",
"stretch"), and is corrected at all only when its correction is lexicon.TYPO_ODDS (30) times commoner
(lexicon.meant_as_typed, a noisy channel: "comes" is not "cones", "tower" not "lower"), unless it is
an inflection of it ("removed", "wants"). A typo as near an everyday word as a refused one, where no
shape or colour slot opens before it, is not refused ("coud you", "clour the square": could, colour,
not cloud). A dictated homophone of a slot word is that word where only its slot fits ("a blew
circle", "the bottom write corner": lexicon.SOUND_ALIKE); a word spelled out is joined ("B-L-U-E");
"up" and "down" after a phrasal verb or an idiom name no place ("listen up", "eyes down", "set up");
a compound of "-up" is one word ("line-up", "touch-up"); "perched on" or "sitting on" another
object is above it; the top of a sky or of the canvas is the top row, not a relation; a big number
nothing follows is said, not counted ("Legs eleven"); "in all 4 corners" counts; a telegram's
"stop" ends a sentence. An unknown English word right after a colour name is where
the shape stands ("an emerald zigzag"), and a reading that names no object is refused. A second
pass (arrange) then puts the objects and edits in the training captions' order where the words pin
them down. A word the world lacks in a slot that matters is refused here, in one plain
sentence (WriterError with .kind): a colour the world has not ("purple", "salmon"), a shape it does
not draw ("hexagon"), an unknown word where a colour or shape must stand ("a glorp ball"), more
than shapes.MAX_OBJECTS objects, an edit the world cannot make ("move", "rotate").
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field

from course_lib import shapes
from course_lib.language.arrange import CLAUSE, PLURAL, ROW_COL, arrange_instruction, arrange_request, in_model_words, \
    lines_as_cells
from course_lib.language.lexicon import ACHROMATIC, BACKGROUND_NOUNS, BACKGROUND_TERMS, COLOUR_CATEGORIES, COUNT_TERMS, \
    MADE_UP_NOUNS, POSITION_TERMS, SHAPE_NOUNS, UNSUPPORTED_SHAPES, VAGUE_NOUNS, colour_lexicon, colour_of, common_word, english_word, \
    meant_as_typed, SOUND_ALIKE, why_not
from course_lib.language.refusals import WriterError
from course_lib.language.words import SCENE
from course_lib.validation import CourseInputError

MODIFIERS = ("dark", "light", "pale", "deep", "bright", "vivid", "pastel", "dull", "rich", "strong", "pure", "vibrant",
             "hot", "neon", "soft", "medium", "warm", "cool", "darker", "lighter", "brighter", "dusty", "muted", "true",
             "plain", "solid", "shiny", "glossy", "matte", "big", "small", "little", "large", "tiny", "huge", "nice",
             "pretty", "cute", "simple", "lone", "lonely", "same", "new", "another", "other", "second", "extra",
             "filled", "flat", "colored", "coloured", "sized", "shaped", "looking", "ish", "kind", "sort", "of", "very",
             "really", "quite", "fairly", "sharp", "perfect", "giant", "mini", "fat", "thin", "bold", "lovely", "cool",
             "single", "just", "only", "some", "whole", "entire")
CHANGE_VERBS = ("make", "turn", "change", "paint", "colour", "color", "recolour", "recolor", "swap", "switch", "exchange",
                "replace", "convert", "transform", "set", "should", "want", "be", "become", "tint", "dye", "fill",
                "shade", "redo", "recolour", "have")
REMOVE_VERBS = ("remove", "delete", "erase", "drop", "eliminate", "lose", "clear", "rid", "away", "out", "ditch",
                "cancel", "scratch", "scrap", "strike", "bin", "dump", "withdraw", "withdrawn", "axe", "nix", "evict",
                "expel", "banish", "excise", "oust", "vanish", "vanishes", "disappear", "disappears", "discard", "purge",
             "pot", "pots", "potted", "bowled", "uproot", "dismiss", "scrub", "kill", "exits", "gone")  # potted: snooker
ADD_VERBS = ("add", "put", "place", "insert", "include", "stick", "pop", "draw", "create", "throw", "introduce", "enter",
             "enters", "join", "joins", "joining", "spawn", "spawns", "popped", "pops", "arrive", "arrives", "arrived",
             "arriving", "addition")
UNSUPPORTED_VERBS = ("move", "moving", "shift", "slide", "rotate", "spin", "turnaround", "resize", "enlarge", "shrink",
                     "scale", "grow", "bigger", "smaller", "larger", "flip", "mirror", "duplicate", "copy", "blur",
                     "sharpen", "animate", "stretch", "squash", "tilt", "zoom", "crop", "swapped", "relocate", "drag",
                     "bounce")
# Edits of size, light, texture or layout the editor cannot make (in an instruction).
UNSUPPORTED_EDITS = ("brighter", "darker", "lighter", "dimmer", "shadow", "shadows", "glow", "glowing", "outline",
                     "border", "texture", "transparent", "twice", "thicker", "thinner", "wider", "taller", "shorter",
                     "around", "upside", "3d", "sparkle", "shine", "gradient", "pattern", "stripes", "striped",
                     "dotted", "sharper", "blurry", "rounder", "sharpen")
RELATIONS = {"above": "above", "over": "above", "atop": "above", "below": "below", "under": "below",
             "beneath": "below", "underneath": "below"}
STRUCTURE = ("and", "with", "plus", "then", "also", "the", "it", "them", "its", "to", "into", "of", "each", "both",
             "all", "every", "instead", "as", "well", "too", "next", "on", "in", "at", "against", "one", "ones", "thing",
             "things", "no", "not", "but", "or", "either")
PICTURE_NOUNS = ("image", "picture", "canvas", "frame", "screen", "scene", "grid", "page", "drawing", "painting", "photo",
                 "view", "square", "board", "field")
REFUSAL_KINDS = ("colour", "shape", "count", "action", "slot", "background")


@dataclass
class Reading:
    """What the reader made of a text: the words the model reads, each word's role, and a refusal (None: none)."""

    text: str
    model_text: str
    roles: list[tuple[str, str, str]] = field(default_factory=list)  # (word as typed, as corrected, role)
    refusal: WriterError | None = None

    def raise_refusal(self) -> None:
        """Raise the reading's refusal, if it has one."""
        if self.refusal is not None:
            raise self.refusal


def refusal(kind: str, message: str, word: str = "") -> WriterError:
    """Return a WriterError of `kind` (REFUSAL_KINDS or a writer refusal's kind) with a one-sentence message and the word."""
    error = WriterError(message)
    error.kind, error.word = kind, word
    return error


def refusal_answer(error: WriterError) -> str:
    """Return the writer's answer for a reader's refusal: "too many objects" for a count, else "unsupported: <word>"."""
    if not isinstance(error, WriterError):
        raise CourseInputError(f"error must be a WriterError, got {type(error).__name__}.")
    return "too many objects" if getattr(error, "kind", "") == "count" else f"unsupported: {getattr(error, 'word', '')}"


@functools.cache
def vocabulary() -> frozenset[str]:
    """Return every word the reader knows: the lexicon's colour-name words, the slot words and the structure words."""
    words = {w for name in colour_lexicon() for w in name.split()}
    words |= {w for nouns in SHAPE_NOUNS.values() for w in nouns} | set(UNSUPPORTED_SHAPES) | set(VAGUE_NOUNS)
    words |= {w + "s" for w in UNSUPPORTED_SHAPES} | set(POSITION_TERMS) | set(COUNT_TERMS) | set(BACKGROUND_NOUNS)
    words |= set(BACKGROUND_TERMS) | set(MODIFIERS) | set(CHANGE_VERBS) | set(REMOVE_VERBS) | set(ADD_VERBS)
    words |= set(UNSUPPORTED_VERBS) | set(RELATIONS) | set(STRUCTURE) | set(PICTURE_NOUNS) | set(FILLERS)
    words |= _stop_words() | set(UNSUPPORTED_EDITS)
    return frozenset(w for w in words if w.isalpha())


def _stop_words() -> set[str]:
    # scikit-learn's English stop-word list (318 words, from the Glasgow Information Retrieval Group's list)
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return set(ENGLISH_STOP_WORDS)


# Common English words that are neither slot words nor typos of one (so "bed" is not read as "red").
FILLERS = ("please", "could", "would", "can", "you", "me", "i", "d", "like", "love", "need", "show", "give", "see",
           "get", "let", "us", "we", "my", "your", "there", "here", "this", "that", "these", "those", "is", "are", "was",
           "were", "should", "must", "will", "have", "has", "having", "sitting", "sits", "placed", "standing",
           "located", "positioned", "somewhere", "where", "what", "which", "who", "how", "why", "when", "ok", "okay",
           "hey", "hi", "hello", "thanks", "thank", "cheers", "now", "so", "well", "just", "maybe", "perhaps", "for",
           "from", "by", "about", "around", "near", "side", "corner", "corners", "hand", "part", "area", "spot", "region",
           "half", "edge", "row", "column", "cell", "position", "please", "wanna", "want", "gonna", "go", "lets", "let",
           "s", "t", "m", "re", "ll", "ve", "do", "does", "did", "don", "doesn", "isn", "an", "any", "sure",
           "exactly", "right", "again", "still", "anything", "else", "nothing", "everything", "more", "less", "than",
           "color", "colour", "painted", "coloured", "colored", "way", "time", "way", "bit", "lot", "little",
           "image", "picture", "render", "sketch", "paint", "generate", "illustrate", "depict", "produce", "output",
           "request", "okay", "yes", "yeah", "nope", "idea", "think", "guess", "fine", "good", "great", "awesome",
           "cool", "background", "using", "use", "same", "other", "another", "else", "together", "alongside", "beside",
           "sit", "sitting", "sat", "stand", "lying", "floating", "resting", "hanging", "being", "been", "shown",
           "appear", "appears", "place", "spot", "up", "down", "over", "out", "off", "if", "possible", "thx", "pls",
           "plz", "kindly", "wish", "hope", "rather", "prefer", "also", "too", "either", "neither", "nor", "take",
           "get", "keep", "leave", "exchange", "got", "own", "has", "had", "better", "best", "look", "looks", "nicer",
           "stay", "stays",
           "prettier", "fun", "mind", "ideally", "actually", "basically", "literally", "something", "somebody",
           "today", "tonight", "tomorrow", "later", "soon", "dawn", "dusk", "noon", "midnight", "finish", "coat", "coating", "varnish", "lacquer", "glaze")


def _one_or_two_apart(a: str, b: str, budget: int) -> int | None:
    # Damerau-Levenshtein (optimal string alignment) distance if <= budget, else None
    if abs(len(a) - len(b)) > budget:
        return None
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > budget:
            return None
        prev2, prev = prev, cur
    return prev[-1] if prev[-1] <= budget else None


def typo_distance(a: str, b: str) -> int:
    """Return the Damerau-Levenshtein distance of two words (optimal string alignment): edits, drops, adds, swaps."""
    if not isinstance(a, str) or not isinstance(b, str):
        raise CourseInputError("typo_distance(a, b) takes two strings.")
    return _one_or_two_apart(a, b, max(len(a), len(b)))


def typo_budget(word: str) -> int:
    """Return how many character edits the reader forgives in a word: 0 below 4 letters, 1 for 4-6, 2 for 7+."""
    return 0 if len(word) < 4 else (1 if len(word) < 7 else 2)


@functools.cache
def correct(word: str) -> str:
    """Return the known word nearest to `word` by characters (Damerau-Levenshtein), or `word` itself when none is unique.   [nb 09]

    A known word comes back as it is; an unknown one within typo_budget(word) edits of exactly one
    nearest known word (or of several that mean the same) comes back as that word.
    """
    if not isinstance(word, str):
        raise CourseInputError(f"word must be a string, got {type(word).__name__}.")
    known = vocabulary()
    if word in known or not word.isalpha():
        return word
    budget = typo_budget(word)
    best, found = budget + 1, set()
    for k in known:
        if len(k) < 3:
            continue
        d = _one_or_two_apart(word, k, min(budget, best))
        if d is None:
            continue
        if d < best:
            best, found = d, {k}
        elif d == best:
            found.add(k)
    for keep in (lambda k: True, lambda k: k[0] == word[0], lambda k: k[0] == word[0] and k not in FILLERS,
                 lambda k: k[0] == word[0] and k not in FILLERS and _basic(k),
                 lambda k: k[0] == word[0] and k not in FILLERS and _basic(k) and _drawable(k)):
        narrowed = {k for k in found if keep(k)}
        if len({_meaning(k) for k in narrowed}) == 1:  # one meaning left (ties: same first letter, then slot words)
            return min(narrowed)
        found = narrowed or found
    return word


@functools.cache
def _near_everyday(word: str) -> bool:
    # is an everyday word (FILLERS) as near the typed word as its correction ("coud": "could" and "cloud")?
    fix = correct(word)
    if fix == word:
        return False
    d = _one_or_two_apart(word, fix, typo_budget(word))
    return d is not None and any(_one_or_two_apart(word, k, d) is not None for k in FILLERS if len(k) >= 3)


def _guessed_refusal(raw: list[str], words: list[str], k: int) -> bool:
    # a typo corrected into a word the world refuses, where an everyday word is as near and no shape or colour slot
    # opens before it ("coud you make it blue", "clour the block yellow"): a refusal is not built on that guess
    before = raw[k - 1] if k else ""
    return words[k] != raw[k] and _refused_word(words[k]) and words[k] not in COUNT_TERMS and _near_everyday(raw[k]) \
        and not (before in ("a", "an", "the", "one", "some", "this", "that") or before in MODIFIERS
                 or colour_of(before) is not None)


def _refused_word(word: str) -> bool:
    # a word the reader refuses: an edit, a shape, a colour or a count the world lacks ("stretch", "star", "teal", "seven")
    entry = colour_of(word)  # black, white and grey are refused for objects only: they are the background's colours
    return word in UNSUPPORTED_VERBS or word in UNSUPPORTED_EDITS or _unsupported_shape(word) is not None or (
        entry is not None and entry.world is None and entry.category not in ACHROMATIC and word not in BACKGROUND_TERMS
    ) or COUNT_TERMS.get(word, 0) > shapes.MAX_OBJECTS


def _drawable(word: str) -> bool:
    # a value the world draws (one of its colours, shapes or places), rather than a slot word it refuses ("grey")
    return word in shapes.COLOURS or _shape_of(word) is not None or word in POSITION_TERMS


def _basic(word: str) -> bool:
    # a word of the slot lists or a category word, rather than one of the lexicon's rarer colour names
    return (word in COLOUR_CATEGORIES or _shape_of(word) is not None or word in POSITION_TERMS or word in COUNT_TERMS
            or word in RELATIONS)


def _meaning(word: str) -> str:
    for shape, nouns in SHAPE_NOUNS.items():
        if word in nouns:
            return "shape:" + shape
    entry = colour_of(word)
    return f"colour:{entry.world}" if entry is not None and entry.world is not None else word


# Clock-face places: the hour hand's direction, to the nearest of the grid's eight outer cells (12 is straight up).
CLOCK = {12: "top", 1: "top right", 2: "top right", 3: "right", 4: "bottom right", 5: "bottom right", 6: "bottom",
         7: "bottom left", 8: "bottom left", 9: "left", 10: "top left", 11: "top left"}
# Abbreviations people type in chat and notes (texting shorthand, and the corners' initials of layout tools).
ABBREVIATIONS = {"sq": "square", "sqr": "square", "sqs": "squares", "circ": "circle", "crcl": "circle", "trngl": "triangle",
                 "btm": "bottom", "bot": "bottom", "rt": "right", "lft": "left", "ctr": "centre", "cntr": "centre",
                 "tl": "top left", "tr": "top right", "bl": "bottom left", "br": "bottom right", "grn": "green",
                 "blu": "blue", "ylw": "yellow", "yel": "yellow", "bkg": "background", "bgd": "background",
                 "bgnd": "background", "u": "you", "obj": "object", "w": "with", "col": "column", "cols": "columns"}
COMPASS = {"northeast": "north east", "northwest": "north west", "southeast": "south east", "southwest": "south west"}
ORDINALS = {"first": 0, "second": 1, "third": 2, "last": 2, "1st": 0, "2nd": 1, "3rd": 2}
LINE_WORDS = {"row": "row", "rows": "row", "column": "column", "columns": "column"}
LINE_VERBS = ("along", "across", "down", "up", "through")  # "along the top", "stacked up the left side": a whole line
# Words after which "up" or "down" ends a phrasal verb or an idiom, not a place ("listen up", "eyes down", "set up").
PHRASAL_HEADS = ("listen", "hurry", "shut", "speak", "cheer", "wake", "calm", "settle", "slow", "eyes", "heads", "set",
                 "tidy", "buck", "sum", "wrap", "warm", "cool", "sign", "show", "turn", "shape", "man", "suit", "gear",
                 "hands", "thumbs", "chin", "step", "back", "sit", "stand", "pipe", "own", "fess", "grow", "cheers")
# Words before "on" that stand one object on another ("a yellow square perched on a green square"): above it.
RESTING = ("perched", "perches", "resting", "rests", "sitting", "sits", "sat", "balanced", "balancing", "balances",
           "stacked", "standing", "stands", "lying", "lies", "seated", "parked", "propped", "riding", "rides", "mounted")
# A self-correction: the value after the marker replaces the last value of its kind ("a blue square in the top left, no
# wait, the top right"; "make it red, sorry I meant blue").
CORRECTIONS = (("no", "wait"), ("wait", "no"), ("sorry", "i", "meant"), ("sorry", "i", "mean"), ("i", "meant"),
               ("i", "mean"), ("scratch", "that"), ("or", "rather"), ("correction",), ("changed", "my", "mind"),
               ("change", "of", "mind"), ("on", "second", "thought"), ("on", "second", "thoughts"))
FIX = "<fix>"  # the marker's place in the first pass's words, until the correction is made
# Words a number follows when it numbers a step, not objects ("Recipe step 4: ...", "Exhibit 2").
NUMBERED = ("step", "item", "rule", "point", "part", "line", "note", "exhibit", "figure", "fig", "page", "chapter",
            "version", "option", "number", "round", "level", "lesson", "task", "question", "slide", "act", "take",
            # and labels, a numbered thing that is not an object ("Table 3:", "Bed 4 -", "Q2:", "No. 1", "Room 12")
            "table", "bed", "room", "seat", "gate", "lane", "platform", "q", "ex", "exercise", "ward", "bay",
            "desk", "unit", "player", "patient", "case", "shot", "episode", "track", "floor", "zone", "stage", "hole",
            "court", "group", "team", "class", "grade", "year", "day", "week", "door", "flat", "apartment", "bus",
            "panel", "sheet", "tab", "draft", "test", "trial", "run", "sample", "ticket", "order", "ref", "section",
            "problem", "puzzle", "card", "slot", "photo", "plate", "scene")


def _counts_something(words: list[str], i: int) -> bool:
    # does an object's noun follow the number words[i] ("2 yellow squares", "3 more", "10 big circles", "2x")?
    j = i + 1
    while j < len(words) and j - i <= 4 and (words[j] in MODIFIERS or words[j] in ("more", "of", "them")
                                             or colour_of(words[j]) is not None):
        if words[j] in ("more", "them"):
            return True
        j += 1
    return j < len(words) and (_is_noun(words[j]) or words[j] in ("x", "times", "corners", "cells") or words[j].isalpha()
                               and words[j] not in vocabulary() and not common_word(words[j]))


def _labels_a_number(words: list[str], i: int) -> bool:
    # is words[i], a count word, the number of a step or a label ("Step 4", "Table 3", "No. 2", "question two")?
    before = words[i - 1] if i > 0 else ""
    if before == "." and i > 1 and words[i - 2] in ("no", "nr"):
        before = "number"
    if words[i].isdigit() and before not in ("x", "times") and not _counts_something(words, i):
        return True  # "Homework 5, part b", "10/10", "Gallery 4.", "stardate 4102.7", "#12:", "a d20": no object follows
    if before not in NUMBERED:
        return False
    return words[i].isdigit() or words[i] not in ("a", "an", "one", "single", "pair", "couple", "both", "trio") and (
        before not in ("take", "run", "test", "order", "act", "note", "point", "line", "part"))


def _purpose_phrase(words: list[str], i: int) -> int:
    # the length of a phrase "for ..." (words[i] == "for", up to the clause's end) that names no colour, shape, place or
    # background but does name something ("for the away game", "for ten points", "for table 6"); 0: none
    end = i + 1
    while end < len(words) and end - i <= 5 and words[end] not in (",", ".", "!", "?", ";", ":", "and", "then"):
        end += 1
    span = words[i + 1:end]
    if not span or end - i > 5 and end < len(words) and words[end] not in (",", ".", "!", "?", ";", ":", "and", "then"):
        return 0
    slot = any(_is_noun(w) or w in POSITION_TERMS or w in BACKGROUND_NOUNS or w in RELATIONS or w in shapes.COLOURS
               or w in shapes.BACKGROUNDS or w in ("gray", "it", "them") for w in span)
    names = any(w.isalpha() and w not in COUNT_TERMS and w not in MODIFIERS and w not in STRUCTURE
                and w not in FILLERS and w not in _stop_words() for w in span)
    return 1 + len(span) if names and not slot else 0


def _onto_background(words: list[str], i: int) -> int:
    # "put it on a grey background", "place the circle against black": the length of the words from the verb to the
    # preposition when what follows it is a background colour (0: no such phrase)
    if i + 1 >= len(words) or words[i + 1] not in ("it", "them", "everything", "the", "this", "that", "all"):
        return 0
    j = i + 1
    while j < len(words) and words[j] not in (",", ".", "!", "?", ";", "and", "then", "on", "onto", "against"):
        j += 1
    k = j + 1
    while k < len(words) and words[k] in ("a", "an", "the") + MODIFIERS:
        k += 1
    entry = colour_of(words[k]) if j < len(words) and words[j] in ("on", "onto", "against") and k < len(words) else None
    return j + 1 - i if entry is not None and entry.category in ACHROMATIC else 0


def _phrasal_remove(words: list[str], i: int) -> bool:
    # an object taken away by a phrasal verb: "comes off", "take the square off", "knock it off", "do without the red one"
    if words[i] == "without":
        return i > 0 and words[i - 1] in ("do", "go", "manage", "live")
    if words[i] == "left" and 0 < i < len(words) - 2 and words[i - 1] in ("has", "have", "had", "s", "just") \
            and words[i + 1] == "the" and words[i + 2] not in POSITION_TERMS and words[i + 2] not in FILLERS:
        return True  # "the yellow one has left the building": gone, not the left column
    if words[i] != "off" or i == 0:
        return False
    if words[i - 1] in ("come", "comes", "coming", "came", "go", "goes", "going") or i + 2 < len(words) and words[
            i + 1] in ("it", "he", "she", "they") and words[i + 2] in ("goes", "go", "went", "comes", "come"):
        return True  # "the circle comes off", "off it goes": gone
    start = max((k for k in range(i) if words[k] in (",", ".", "!", "?", ";", ":", "and", "then")), default=-1) + 1
    return any(x in ("take", "takes", "taking", "took", "knock", "knocks", "send", "sends", "sent", "cut", "rub", "wipe",
                     "kick", "kicks", "kicked")
               for x in words[start:i])


def _named_as(words: list[str], i: int) -> int:
    # "the disco ball is a yellow circle", "the sun's a yellow ball": the length of "the ... is" (0: no such words) when
    # what follows is an object with a shape, and the name before it has no colour
    for k in range(i + 2, min(i + 5, len(words) - 1)):
        if words[k] in ("is", "s") and words[k + 1] in ("a", "an"):
            j = k + 2
            while j < len(words) and (words[j] in MODIFIERS or colour_of(words[j]) is not None):
                j += 1
            if j < len(words) and _shape_of(words[j]) and not any(
                    colour_of(x) is not None or not x.isalpha() or x in POSITION_TERMS or x in STRUCTURE
                    or x in ("there", "here", "this", "that", "where") for x in words[i + 1:k]):
                return k + 1 - i
            return 0
    return 0


def _words(text: str) -> list[str]:
    text = re.sub(r"\bSTOP\b(?!\s+SIGN)", " . ", text)  # a telegram's full stop ("RED CIRCLE TOP LEFT STOP")
    text = re.sub(r"\s[-–—]+\s(?=[a-z]+\s*[.!?]*$)", " , ", text)  # "the left one - cobalt": a last word set apart
    text = text.lower().replace("’", "'")
    if len(re.findall(r"\bstop\b(?!\s+sign)", text)) > 1 or re.search(r"(?<!\bbus)(?<!\bfull)\s+stop\W*$", text):
        text = re.sub(r"\bstop\b(?!\s+sign)", " . ", text)  # a telegram's stop, once the writer has lowered its case
    text = re.sub(r"\b[a-z](?:-[a-z]){2,}\b", lambda m: m[0].replace("-", ""), text)  # "a B-L-U-E square": spelled out
    text = re.sub(r"\b(?!upside\b)([a-z]{3,})-(up|down|ups)\b", lambda m: m[0] if m[1] in POSITION_TERMS else m[1] + m[2],
                  text)  # "line-up", "touch-up", "cover-up": one noun, not a place (not "top-down", "upside-down")
    text = re.sub(r"\b(1[0-2]|[1-9])\s*o\s*'?\s*clock\b", lambda m: f" {CLOCK[int(m[1])]} ", text)
    text = re.sub(r"\(\s*\d\s*\)|(?:^|(?<=\s))\d\s*\)", " , ", text)  # "(1) ... (2) ...", "1) ... 2) ...": a list
    text = re.sub(r"\b(?:background|backdrop|bg)\s*:\s*(?:n\s*/\s*a|none|nil|n\.a\.|-+)(?![a-z])", " , ", text)
    text = re.sub(r"\bn\s*/\s*a\b", " none ", text)  # "Background: N/A": a field left empty names nothing
    text = re.sub(r"\b\d+\s*/\s*\d+\b", " , ", text)  # "10/10", "3/4", "12/05": a score or a date, not a count
    text = re.sub(r"->|=>|→|=", " : ", text).replace("+", " and ").replace("&", " and ").replace("'", " ")
    text = re.sub(r"(?<![a-z]\b)/|[|\[\]<>]", " , ", text)  # "bg: black | obj: ...", "[bg: black] [obj: ...]", "a / b": fields
    text = re.sub(r"\b(1st|2nd|3rd)\b", lambda m: {"1st": "first", "2nd": "second", "3rd": "third"}[m[1]], text)
    words = re.findall(r"#[0-9a-f]{6}(?![0-9a-z])|#[0-9a-f]{3}(?![0-9a-z])|[a-z]+|\d+|[,;:.!?]", text)
    return [part for w in words for part in COMPASS.get(w, ABBREVIATIONS.get(w, w)).split()]


def _shape_of(word: str) -> str | None:
    return next((s for s, nouns in SHAPE_NOUNS.items() if word in nouns), None)


def _unsupported_shape(word: str) -> str | None:
    if word in UNSUPPORTED_SHAPES:
        return word
    if word.endswith("s") and word[:-1] in UNSUPPORTED_SHAPES:
        return word[:-1]
    if word.endswith("es") and word[:-2] in UNSUPPORTED_SHAPES:
        return word[:-2]
    return None


def _is_noun(word: str) -> bool:
    return _shape_of(word) is not None or _unsupported_shape(word) is not None or word in VAGUE_NOUNS


def _colour_at(words: list[str], i: int) -> tuple[int, object] | None:
    # the longest lexicon name starting at words[i] (up to 3 words): (length, entry); a name followed by one of the
    # world's colour words ("ruby red", "sapphire blue") is read as the whole phrase, which rule 1 puts in that colour
    for n in (3, 2, 1):
        if i + n <= len(words):
            entry = colour_of(" ".join(words[i:i + n]))
            if entry is not None:
                if i + n < len(words) and words[i + n] in shapes.COLOURS and words[i + n] != entry.name:
                    last = colour_of(words[i + n])
                    phrase = " ".join(words[i:i + n + 1])
                    return n + 1, dataclasses.replace(last, name=phrase, source="phrase", votes=())
                return n, entry
    return None


def _next_content(words: list[str], j: int) -> str | None:
    while j < len(words) and (words[j] in MODIFIERS or words[j] in ("ish", "coloured", "colored", "-")):
        j += 1
    return words[j] if j < len(words) else None


_POSITION_PHRASE = {(r, c): p for (r, c), p in shapes.POSITION_PHRASES.items()}
_PHRASE_CELL = {p: cell for cell, p in _POSITION_PHRASE.items()}


def _cell(terms: list[str]) -> tuple[int, int] | None:
    rows = {t for t in terms if t in ("top", "bottom")}
    cols = {t for t in terms if t in ("left", "right")}
    if len(rows) > 1 or len(cols) > 1:
        return None
    r = {"top": 0, "bottom": 2}[rows.pop()] if rows else 1
    c = {"left": 0, "right": 2}[cols.pop()] if cols else 1
    return r, c


def _places(terms: list[str], line: bool) -> list[str] | None:
    # a run of place words -> the places it names: cell phrases, or "row:r" / "col:c" for a whole line ("the top row",
    # "down the left side", "the bottom cells"), or two cells ("both top corners", "top right bottom right"); None: unclear
    corners, plural = "corners" in terms, "cells" in terms
    terms = [t for t in terms if t not in ("corners", "cells")]
    cells, cur = [], {}
    k = 0
    while k < len(terms):
        t, nxt = terms[k], terms[k + 1] if k + 1 < len(terms) else None
        if t in LINE_WORDS:
            k += 1
            continue
        if nxt in LINE_WORDS:
            axis = "row" if LINE_WORDS[nxt] == "row" else "col"
            value = ORDINALS.get(t, {"top": 0, "bottom": 2, "left": 0, "right": 2, "middle": 1}.get(t))
            if value is None or axis == "row" and t in ("left", "right") or axis == "col" and t in ("top", "bottom"):
                return None
            k += 2
        elif t in ORDINALS:
            return None
        else:
            axis = {"top": "row", "bottom": "row", "left": "col", "right": "col"}.get(t, "middle")
            value = {"top": 0, "bottom": 2, "left": 0, "right": 2}.get(t, 1)
            k += 1
        if axis in cur and cur[axis] != value:
            cells.append(cur)
            cur = {}
        cur[axis] = value
        cur.setdefault("named", []).append((axis, nxt in LINE_WORDS or line))
    if cur:
        cells.append(cur)
    out = []
    for c in cells:
        axes = {a: v for a, v in c.items() if a in ("row", "col", "middle")}
        lines = [a for a, is_line in c["named"] if is_line and a in ("row", "col")]
        if len(axes) == 1 and "middle" not in axes:
            (axis, value), = axes.items()
            if corners:  # "both top corners": the line's two ends
                ends = [(value, 0), (value, 2)] if axis == "row" else [(0, value), (2, value)]
                out += [_POSITION_PHRASE[e] for e in ends]
                continue
            if lines or plural:  # "the top row", "down the left side", "the bottom cells": the whole line
                out.append(f"{axis}:{value}")
                continue
        out.append(_POSITION_PHRASE[(c.get("row", 1), c.get("col", 1))])
    return out or None


def _value_kind(word: str) -> str | None:
    for kind, values in (("colour", shapes.COLOURS), ("shape", shapes.SHAPES), ("place", _POSITION_PHRASE.values()),
                         ("background", shapes.BACKGROUNDS)):
        if word in values:
            return kind
    return None


def _corrected(out: list[str]) -> list[str]:
    # each FIX marker: the first value after it takes the place of the last value of the same kind before it, and the
    # words from the marker to that value go ("a blue square in the top left , FIX , in the top right" -> "a blue square
    # in the top right"; "make it red , FIX blue" -> "make it blue")
    out = list(out)
    while FIX in out:
        m = out.index(FIX)
        new = next((k for k in range(m + 1, len(out)) if _value_kind(out[k])), None)
        old = next((j for j in range(m - 1, -1, -1) if _value_kind(out[j]) == _value_kind(out[new])), None) \
            if new is not None else None
        if old is None:
            del out[m]
            continue
        out[old] = out[new]
        start = m
        while start - 1 > old and out[start - 1] in (",", "and"):
            start -= 1
        del out[start:new + 1]
    return out


def _clause_names_object(words: list[str], i: int) -> bool:
    # does the clause around words[i] (between punctuation, "and" and "then") name an object or point at one ("it")?
    stops = (",", ".", "!", "?", ";", ":", "and", "then")
    start = max((k for k in range(i) if words[k] in stops), default=-1) + 1
    end = next((k for k in range(i + 1, len(words)) if words[k] in stops), len(words))
    return any(_is_noun(w) or w in ("it", "them", "one", "ones", "they") for w in words[start:end])


def _row_and_column_joined(out: list[str]) -> list[str]:
    # one object and two places, a row and a column ("Top shelf, far right: one blue circle", "in the lower half, in
    # the middle"): the object's cell is where they cross
    objects = [k for k, w in enumerate(out) if w in shapes.COLOURS and (k + 1 == len(out) or out[k + 1] not in
                                                                        shapes.COLOURS)
               or (w in shapes.SHAPES or w == "thing" or _unsupported_shape(w)) and not (
                   k > 0 and out[k - 1] in shapes.COLOURS)]
    places = [k for k, w in enumerate(out) if w in _POSITION_PHRASE.values()]
    if len(objects) != 1 or len(places) != 2 or sum(w in ("a", "one") for w in out) > 1 or any(
            w in ("two", "three", "many", PLURAL) or w in RELATIONS.values() or w.startswith(("to the",) + ROW_COL)
            for w in out):
        return out
    cells = [_PHRASE_CELL[out[k]] for k in places]
    rows = [r for r, c in cells if c == 1 and r != 1]
    cols = [c for r, c in cells if r == 1 and c != 1]
    if len(rows) > 1 or len(cols) > 1 or not all(r == 1 or c == 1 for r, c in cells):
        return out
    out = list(out)
    out[places[0]] = _POSITION_PHRASE[(rows[0] if rows else 1, cols[0] if cols else 1)]
    k = places[1]
    del out[k]
    while k - 1 > places[0] and out[k - 1] in (",", "and"):
        del out[k - 1]
        k -= 1
    return out


def _announcements_dropped(out: list[str]) -> list[str]:
    # "two things: a red ball ..., a blue box ...": a count of things before a list announces it; the list counts
    k = 0
    while k + 1 < len(out):
        if out[k] in ("two", "three") and out[k + 1] == "thing" and any(w in shapes.SHAPES for w in out[k + 2:]):
            del out[k:k + 2]
            continue
        k += 1
    return out


def _background_last(out: list[str]) -> list[str]:
    # "white background, a blue ball ...", "the background grey, ...": the background phrase moves to the end, where
    # captions put it, as "<colour> background"
    if "background" not in out:
        return out
    k = out.index("background")
    colour = None
    if k > 0 and out[k - 1] in shapes.BACKGROUNDS:
        span = (k - 1, k + 1)
        colour = out[k - 1]
    else:
        j = k + 1
        while j < len(out) and out[j] in ("to", "the", "a"):
            j += 1
        if j < len(out) and out[j] in shapes.BACKGROUNDS:
            span, colour = (k, j + 1), out[j]
    if colour is None:
        return out
    start, end = span
    if start > 0 and out[start - 1] in ("a", "the"):
        start -= 1
    rest = out[:start] + out[end:]
    if start == 0 or end < len(out) and out[end] == "background":
        while rest and rest[0] in (",", "and"):
            rest.pop(0)
    while rest and rest[-1] in (",", "and"):
        rest.pop()
    return rest + [",", colour, "background"] if rest else [colour, "background"]


def _sound_alikes_in_their_slot(words: list[str]) -> list[str]:
    # a dictated homophone of a slot word, where only that slot fits: "a blew circle", "a read triangle" (before a
    # shape noun), "the bottom write corner" (after a row or before "corner"); elsewhere the word is what it says
    out = list(words)
    for k, w in enumerate(words):
        meant = SOUND_ALIKE.get(w)
        if meant is None:
            continue
        nxt = _next_content(words, k + 1)
        before = words[k - 1] if k else ""
        if meant in shapes.COLOURS and nxt is not None and _is_noun(nxt) and before in ("a", "an", "the", "one") \
                or meant in POSITION_TERMS and (before in ("top", "bottom", "upper", "lower", "far")
                                                or nxt in ("corner", "side", "hand", "column")):
            out[k] = meant
    return out


def _count_header(words: list[str], i: int) -> int:
    # "three friends: a red circle ...", "three bogeys on screen: red circle upper left, ...": a count of a noun the
    # world does not know, ended by a colon (or a comma or full stop right after the noun); the header's length, or 0
    if not (i + 2 < len(words) and words[i + 1].isalpha() and (
            words[i + 1] not in vocabulary() and not _is_noun(words[i + 1])
            or words[i + 1] in ("objects", "things", "shapes", "items", "figures") and words[i + 2] == ":")):
        return 0  # (a count of the world's own plural before a colon heads its list too: "three objects: ...")
    if words[i + 2] in (":", ",", "."):
        return 2
    for k in range(i + 2, min(i + 5, len(words))):
        if words[k] == ":":
            return k - i
        if not words[k].isalpha() or _is_noun(words[k]) or colour_of(words[k]) is not None or words[k] in POSITION_TERMS:
            return 0
    return 0


def _of_the_picture(words: list[str], j: int) -> bool:
    # words[j] is "of": does the picture or its ground follow ("at the top of a black sky", "the top of the canvas")?
    k = j + 1 + (j + 1 < len(words) and words[j + 1] in ("a", "an", "the", "this", "my", "our", "your"))
    while k < len(words) and _shape_of(words[k]) is None:
        if words[k] in BACKGROUND_NOUNS or words[k] in PICTURE_NOUNS or words[k] in ("sky", "paper", "wall", "sheet"):
            return True
        if colour_of(words[k]) is None:
            return False
        k += 1  # "of a black sky": the ground's colour first
    return False


def read(text: str, *, instruction: bool = False, second_pass: bool = True) -> Reading:
    """Read a request (or, with instruction=True, an instruction) against the lexicon: see the module's docstring.   [nb 09]

    second_pass=False: the first pass's words alone, in the order they were typed (what the writer's
    model is trained on, so that it learns to compose from any order where the second pass cannot).
    """
    if not isinstance(text, str):
        raise CourseInputError(f"text must be a string, got {type(text).__name__}.")
    if not isinstance(second_pass, bool):
        raise CourseInputError(f"second_pass must be True or False, got {second_pass!r}.")
    raw = _words(text)
    words = [w if c != w and (_refused_word(c) and common_word(w) or meant_as_typed(w, c)) else c
             for w, c in ((w, correct(w)) for w in raw)]
    words = [raw[k] if _guessed_refusal(raw, words, k) else w for k, w in enumerate(words)]
    words = _sound_alikes_in_their_slot(words)
    roles: list[tuple[str, str, str]] = []
    out: list[str] = []
    fail = None

    def refuse(kind, message, word=""):
        nonlocal fail
        if fail is None:
            fail = refusal(kind, message, word)

    i, n = 0, len(words)
    after_colour = False
    last_verb = ""
    colour_verb = False  # an instruction's change verb seen: a colour name at a clause end is its new colour
    negated = False  # "not", "instead of", "from ... to": the next colour or shape is the old value
    while i < n:
        w, typed = words[i], raw[i]
        marker = next((m for m in CORRECTIONS if tuple(raw[i:i + len(m)]) == m), None)
        if marker is not None:
            roles.append((" ".join(raw[i:i + len(marker)]), " ".join(marker), "correction"))
            out.append(FIX)
            i += len(marker)
            continue
        if not instruction and (w in ("fill", "cover", "tile") or typed in ("fill", "cover", "tile")) and any(
                x in PICTURE_NOUNS or x in ("grid", "everything") for x in words[i + 1:i + 4]):
            refuse("count", f"a scene holds at most {shapes.MAX_OBJECTS} objects; {' '.join(raw[i:i + 4])!r} asks for "
                            f"one in every cell.", typed)  # "fill the whole grid with yellow squares"
            roles.append((typed, w, "count (refused)"))
            i += 1
            continue
        name = _named_as(words, i) if not instruction and w == "the" else 0
        if name:
            roles.append((" ".join(raw[i:i + name]), " ".join(words[i:i + name]), "filler"))
            i += name  # "the disco ball is a yellow circle": what the object stands for, not a second object
            continue
        skip = 2 if w in ("halfway", "midway") else 3 if w == "half" and i + 1 < n and words[i + 1] == "way" else \
            4 if words[i:i + 3] == ["all", "the", "way"] else 0
        if skip and i + skip - 1 < n and words[i + skip - 1] in ("up", "down", "along", "across", "over"):
            roles.append((" ".join(raw[i:i + skip]), " ".join(words[i:i + skip]), "filler"))  # "halfway down the right"
            i += skip
            continue
        if w == "like" and i + 2 < n and words[i + 1] in ("a", "an") and _shape_of(words[i + 2]) is None and any(
                x in shapes.SHAPES for x in out[max((k for k, x in enumerate(out) if x in (",", "and")), default=-1) + 1:]):
            roles.append((" ".join(raw[i:i + 3]), " ".join(words[i:i + 3]), "filler"))  # "a yellow circle like a sun"
            i += 3
            continue
        if w in (".", "!", "?", ":"):  # a sentence ends (a comma for the model, unless it would split "red. circle")
            roles.append((typed, w, "punctuation"))
            header = w == ":" and out and (out[-1] in _POSITION_PHRASE.values() or out[-1].startswith(ROW_COL)
                                           or i + 1 < n and words[i + 1] in ("a", "an"))  # "Blue and Yellow: a ..."
            if (w != ":" and (instruction or out and out[-1] not in shapes.COLOURS) or header) and out \
                    and out[-1] not in (",", "and"):
                out.append(",")
            after_colour = False
            i += 1
            continue
        if instruction and w in ("slide", "slides", "shift", "shifts") and i > 0 and words[i - 1] in (
                "the", "this", "that", "my", "our", "your", "next", "last", "night", "day", "morning", "late", "early"):
            roles.append((typed, w, "filler"))  # "cluttering the slide", "the night shift": a noun, not a move
            i += 1
            continue
        if instruction and w in ("lighter", "darker", "brighter", "paler", "deeper") and i + 1 < n and (
                colour_of(words[i + 1]) is not None or _is_noun(words[i + 1])):
            roles.append((typed, w, "filler"))  # "a lighter green wedge": a shade of the colour, not an edit of light
            i += 1
            continue
        if w == "copy" and (i == 0 or words[i - 1] in (",", ".", "!", "?", "you", "u")) and (
                _next_content(words, i + 1) in (None, ".", "!", "?", ",") or words[i + 1:i + 2] == ["that"]
                and _next_content(words, i + 2) in (None, ".", "!", "?", ",")):
            roles.append((typed, w, "filler"))  # "Houston, the circle is now red, copy?": a radio call's question
            i += 1 + (i + 1 < n and words[i + 1] == "that")
            continue
        if instruction and (w in UNSUPPORTED_VERBS or w in UNSUPPORTED_EDITS or w == "around" and last_verb in (
                "swap", "switch", "exchange")):
            refuse("action", f"the editor can recolour, reshape, remove or add objects and change the background; "
                             f"it cannot move, rotate, resize, flip or copy them ({typed!r}).", typed)
            roles.append((typed, w, "verb (refused)"))
            i += 1
            continue
        # background slot: "<colour> background", "background <colour>", "on/against <colour>" at the end
        if w in BACKGROUND_NOUNS and w != "back" or (w == "back" and i + 1 < n and words[i + 1] == "ground"):
            roles.append((typed, w, "background noun"))
            out.append("background")
            i += 2 if w == "back" else 1
            after_colour = False
            continue
        hit = _colour_at(words, i)
        if w in BACKGROUND_TERMS and (hit is None or hit[0] == 1):
            nxt = _next_content(words, i + 1)
            end = nxt is None or nxt in (",", ".", "!", "?", "and", "then", "please")
            if nxt in BACKGROUND_NOUNS or end and (i > 0 and words[i - 1] in ("on", "against") or any(
                    x in BACKGROUND_NOUNS for x in words[max(0, i - 4):i])):
                roles.append((typed, w, "background"))
                out.append(BACKGROUND_TERMS[w])
                if nxt not in BACKGROUND_NOUNS and "background" not in out[-4:]:
                    out.append("background")
                i += 1
                continue
        if hit is not None:
            size, entry = hit
            phrase = " ".join(words[i:i + size])
            nxt = _next_content(words, i + size)
            basic = entry.name in COLOUR_CATEGORIES or entry.name.split()[-1] in COLOUR_CATEGORIES or entry.source == "hex"
            before_noun = nxt is not None and (_is_noun(nxt) or nxt in BACKGROUND_NOUNS or nxt == "and"
                                               and colour_of(_next_content(words, i + size + 1) or "") is not None)
            then = words[i + size + 1] if i + size + 1 < n else None
            before_unknown = i + size < n and words[i + size] == nxt and nxt.isalpha() and nxt not in vocabulary() \
                and english_word(nxt) \
                and (then is None or then in (",", ".", "!", "?", ";", "in", "on", "at", "along", "across", "up", "down")
                     or then in POSITION_TERMS)  # "an emerald zigzag along the top": the unknown word is the shape
            clause_end = nxt is None or nxt in (",", ".", "!", "?", ";", ":", "and", "then", "please", "too", "instead",
                                                "now", "thanks", "also", "for", "by", "if", "today", "tonight")
            back = i - 1
            while back >= 0 and words[back] in (",", ":", "in", "coloured", "colored", "painted", "all", "entirely"):
                back -= 1
            after_vague = i > 0 and (words[i - 1] in ("in", "coloured", "colored", "painted")
                                     or back >= 0 and _is_noun(words[back]))
            # a black, white or grey that colours no object is the background: "on a black cloth", "a grey picture
            # with ...", "upon a field of white", "Background: White"; before or after an object noun it is refused
            background_here = nxt in BACKGROUND_NOUNS or entry.category in ACHROMATIC and nxt == "behind" or instruction and entry.category in ACHROMATIC and (any(
                x in BACKGROUND_NOUNS for x in words) or not before_noun and not _clause_names_object(words, i)) or (clause_end or nxt in ("one", "instead")) and (
                i > 0 and words[i - 1] in ("on", "against") and entry.category in ACHROMATIC
                or any(x in BACKGROUND_NOUNS for x in words[max(0, i - 4):i])) or not instruction \
                and entry.category in ACHROMATIC and not before_noun and not after_vague and nxt not in ("one", "ones")
            as_noun = nxt in ("colour", "color", "shade", "tone", "hue", "finish", "coat", "glaze", "varnish", "lacquer",
                              "paint", "dye")
            # "a ruby colour", "more of an emerald shade", "a royal blue finish": the colour itself
            named = instruction and not last_verb and clause_end and i > 0 and words[i - 1] in (",", ":") and any(
                x in ("the", "it", "thing") for x in out)  # "the one on the right, cobalt": the named object's colour
            slot = basic or before_noun or before_unknown or after_vague or (instruction and (colour_verb and clause_end or as_noun)) \
                or background_here or named
            if slot and w not in MODIFIERS or slot and size > 1:
                if negated:
                    roles.append((" ".join(raw[i:i + size]), phrase, "old value (dropped)"))
                    negated = False
                    i += size
                    continue
                if background_here:
                    bg = ACHROMATIC.get(entry.category or "")
                    if bg is None:
                        refuse("background", f"the background can be {', '.join(shapes.BACKGROUNDS)}; "
                                             f"{phrase!r} is not one of them.", phrase)
                    roles.append((" ".join(raw[i:i + size]), phrase, "background"))
                    out.append(bg or phrase)
                    if nxt not in BACKGROUND_NOUNS and "background" not in out[-4:]:
                        out.append("background")
                elif entry.world is None:
                    refuse("colour", why_not(entry), phrase)
                    roles.append((" ".join(raw[i:i + size]), phrase, "colour (refused)"))
                    out.append(phrase)
                else:
                    roles.append((" ".join(raw[i:i + size]), phrase, "colour"))
                    out.append(entry.world)
                    after_colour = True
                i += size
                continue
        if w in MODIFIERS and w not in ("one", "single") and not (i + 1 < n and words[i + 1] in LINE_WORDS):
            roles.append((typed, w, "filler"))
            i += 1
            continue
        shape = _shape_of(w)
        if shape is not None and negated:
            roles.append((typed, w, "old value (dropped)"))
            negated = False
            i += 1
            continue
        if shape is not None and instruction and i + 1 < n and words[i + 1] == "it" and (
                i + 2 == n or words[i + 2] in (",", ".", "!", "?", ";")):
            roles.append((" ".join(raw[i:i + 2]), f"make it a {shape}", "verb"))  # "square it": make it a square
            out += ["make", "it", "a", shape]
            i += 2
            continue
        if shape is not None:
            roles.append((typed, w, "shape"))
            out.append(shape)
            if w != shape and (_shape_of(w[:-1]) == shape or w.endswith("es") and _shape_of(w[:-2]) == shape):
                out.append(PLURAL)
            after_colour = False
            i += 1
            continue
        bad_shape = _unsupported_shape(w)
        if bad_shape is not None and (i == 0 or words[i - 1] in (".", "!", "?")) and i + 1 < n and words[i + 1] == "!":
            roles.append((typed, w, "filler"))  # "House!" (a bingo win), "Star!": a word exclaimed, no object asked for
            i += 1
            continue
        if bad_shape is not None:
            refuse("shape", f"the shapes world has no {bad_shape}; it draws circles, squares and triangles.", bad_shape)
            roles.append((typed, w, "shape (refused)"))
            out.append(bad_shape)
            after_colour = False
            i += 1
            continue
        if w == "right" and (i == 0 or words[i - 1] in (".", "!", "?")) and i + 1 < n and words[i + 1] in (
                ",", ".", "then", "so"):
            roles.append((typed, w, "filler"))  # "Right, everyone, draw ...": a discourse word, not the right column
            i += 1
            continue
        if w == "right" and i + 1 < n and words[i + 1] in ("in", "at", "on", "above", "below", "under", "beneath",
                                                              "underneath", "next", "beside", "there", "here") \
                and (i == 0 or words[i - 1] not in ("the", "to", "at", "on", "top", "bottom", "upper", "lower", "middle",
                                                    "far", "hand", "its", "their", "centre", "center")):
            roles.append((typed, w, "filler"))  # "right in the middle": an intensifier, not the right column
            i += 1
            continue
        if w in ("diagonal", "diagonally"):  # "on the diagonal from the top left to the bottom right": a line
            j, terms = i + 1, []
            while j < n and (words[j] in POSITION_TERMS or words[j] in ("from", "to", "the", "going", "running", "of",
                                                                         "corner", "in", "a", "line", "across")):
                if words[j] in POSITION_TERMS:
                    terms.append(POSITION_TERMS[words[j]])
                j += 1
            corners = [t for t in terms if t in ("top", "bottom", "left", "right")][:2]
            out.append("diag:1" if set(corners) in ({"top", "right"}, {"bottom", "left"}) else "diag:0")
            roles.append((" ".join(raw[i:j]), " ".join(words[i:j]), "position"))
            i = j
            continue
        if w in ("down", "up") and i > 0 and words[i - 1] in PHRASAL_HEADS and _next_content(words, i + 1) in (
                None, ",", ".", "!", "?", ";", ":", "and", "for", "then", "please"):
            roles.append((typed, w, "filler"))  # "LISTEN UP!", "Eyes down!", "nicely set up for the next shot"
            i += 1
            continue
        if w in ("down", "up") and i + 1 < n and words[i + 1] in ("the", "in", "at", "on", "to", "along") or w == "up" and (
                i > 0 and words[i - 1] in ("is", "s", "are", "time") and _next_content(words, i + 1) in (
                    None, ",", ".", "!", "?", ";", "and", "so") or i + 1 < n and words[i + 1] in ("a", "an", "some")):
            roles.append((typed, w, "filler"))  # "down the left side", "up in the top right", "the lease is up",
            i += 1  # "fix me up a blue square": a particle, not the top row
            continue
        if instruction and w == "left" and _phrasal_remove(words, i):
            roles.append((typed, w, "verb"))  # "the yellow one has left the building": gone, not the left column
            out.append("remove")
            i += 1
            continue
        if w in POSITION_TERMS and i + 2 < n and words[i + 1] == "to" and {POSITION_TERMS[w], POSITION_TERMS.get(
                words[i + 2])} in ({"left", "right"}, {"top", "bottom"}):
            roles.append((" ".join(raw[i:i + 3]), " ".join(words[i:i + 3]), "direction"))  # "left to right"
            i += 3
            continue
        if w in POSITION_TERMS or w in ORDINALS and i + 1 < n and words[i + 1] in LINE_WORDS:
            j, terms = i, []
            while j < n and (words[j] in POSITION_TERMS or words[j] in LINE_WORDS or words[j] in ORDINALS
                             and j + 1 < n and words[j + 1] in LINE_WORDS
                             or words[j] in ("the", "hand", "side", "corner", "corners", "cell", "cells", "of", "part", "half",
                                             "edge", "area", "very", "dead", "at", "in", "on")):
                if words[j] == "of":
                    k = j + 1 + (j + 1 < n and words[j + 1] == "the")
                    if k < n and words[k] in PICTURE_NOUNS:
                        j = k + 1
                        continue
                    if terms == ["middle"] and k < n and POSITION_TERMS.get(words[k]) in ("top", "bottom", "left", "right"):
                        terms, j = [], k  # "in the middle of the left side": the side's middle cell
                        continue
                    break
                if words[j] in POSITION_TERMS or words[j] in ORDINALS or words[j] in LINE_WORDS:
                    terms.append(POSITION_TERMS.get(words[j], words[j]))
                elif words[j] in ("corners", "cells"):
                    terms.append(words[j])
                j += 1
            # "to the left of X", "to the right of X": a relation, not a cell
            while j > i and words[j - 1] in ("the", "at", "in", "on"):
                j -= 1
            if j < n and words[j] == "of" and terms in (["left"], ["right"]) and any(
                    x in ("side", "hand") for x in words[i:j]):
                k = j + 1 + (j + 1 < n and words[j + 1] in ("the", "this", "that"))
                what = _next_content(words, k)
                if k > j + 1 and what is not None and what.isalpha() and not (
                        _is_noun(what) or colour_of(what) is not None or what in STRUCTURE):
                    roles.append((" ".join(raw[i:k + 1]), " ".join(words[i:k + 1]), "position"))
                    out.append(_POSITION_PHRASE[(1, 0 if terms == ["left"] else 2)])  # "the left side of the bus"
                    after_colour = False
                    i = k + 1
                    continue
            if j < n and words[j] == "of" and terms in (["left"], ["right"]):
                if out and out[-1] == "to":
                    out.pop()
                out.append(f"to the {terms[0]} of")
                roles.append((" ".join(raw[i:j + 1]), " ".join(words[i:j + 1]), "relation"))
                i = j + 1
                continue
            if terms in (["left"], ["right"]) and i > 0 and words[i - 1] in ("its", "their"):  # "to its left": of it
                while out and out[-1] in ("to", "on", "at", "the"):
                    out.pop()
                out += [f"to the {terms[0]} of", "it"]
                roles.append((" ".join(raw[i - 1:j]), " ".join(words[i - 1:j]), "relation"))
                i = j
                continue
            if terms == ["top"] and j < n and words[j] == "of" and not _of_the_picture(words, j):  # "on top of"
                out.append("above")
                roles.append((" ".join(raw[i:j + 1]), " ".join(words[i:j + 1]), "relation"))
                i = j + 1
                continue
            b = i - 1
            while b >= 0 and words[b] in ("the", "in", "at", "on", "into", "to"):
                b -= 1
            if terms in (["left"], ["right"]) and "corner" in words[i:j] and b >= 0 and words[b] in ("up", "down"):
                terms = [POSITION_TERMS[words[b]]] + terms  # "up in the left corner": a corner needs its row
            line = i > 0 and words[i - 1] in LINE_VERBS or i > 1 and words[i - 1] == "the" and words[i - 2] in LINE_VERBS
            places = _places(terms, line)
            if places is None:
                refuse("slot", f"{' '.join(raw[i:j])!r} names two places at once; say one cell of the 3 x 3 grid, "
                               f"e.g. 'top left' or 'bottom'.")
                i = j
                continue
            roles.append((" ".join(raw[i:j]), " ".join(words[i:j]), "position"))
            for k, place in enumerate(places):
                out += (["and"] if k else []) + [place]
            after_colour = False
            i = j
            continue
        if instruction and w == "one" and i > 0 and words[i - 1] in ("that", "this"):
            roles.append((typed, w, "structure"))  # "the red triangle, make that one blue": the object named before
            out.append("it")
            i += 1
            continue
        purpose = _purpose_phrase(words, i) if w == "for" and last_verb not in ("replace", "swap", "switch",
                                                                                "exchange") else 0
        if purpose:
            roles.append((" ".join(raw[i:i + purpose]), " ".join(words[i:i + purpose]), "filler"))
            i += purpose  # "for the night shift", "For ten points": a purpose or an occasion, which names nothing drawn
            continue
        if w in COUNT_TERMS and _labels_a_number(words, i):
            roles.append((typed, w, "filler"))  # "Recipe step 4: ...", "Table 3: ...": a label's number, not a count
            i += 1
            continue
        if w in COUNT_TERMS and (w not in ("a", "an", "one", "single") or True):
            count = COUNT_TERMS[w]
            nxt = _next_content(words, i + 1)
            if nxt == "of":
                nxt = _next_content(words, i + 2)
            plural_next = nxt is not None and nxt not in ("of",)
            if count > shapes.MAX_OBJECTS and nxt in (None, ",", ".", "!", "?", ";", ":", "and") and w.isalpha():
                roles.append((typed, w, "filler"))  # "Legs eleven - and a blue triangle": a number said, nothing counted
                i += 1
                continue
            if count > shapes.MAX_OBJECTS and plural_next:
                refuse("count", f"a scene holds at most {shapes.MAX_OBJECTS} objects; {typed!r} asks for more.", typed)
            if instruction and w == "both" and not (nxt is not None and (_is_noun(nxt) or colour_of(nxt) is not None and (
                    _next_content(words, i + 2) is not None and _is_noun(_next_content(words, i + 2))))):
                out.append("both")  # "make both blue": the two objects, a pronoun here (not "both circles")
                roles.append((typed, w, "structure"))
                i += 1
                continue
            if instruction and w in ("one", "ones") and not (nxt is not None and (_is_noun(nxt) or colour_of(nxt))):
                out.append("thing")  # "the bottom one", "the blue one has to go": the object, not a count
                roles.append((typed, w, "noun"))
                after_colour = False  # "the blue one shimmers and goes green": the noun is said
                i += 1
                continue
            head = _count_header(words, i) if not instruction and 2 <= count <= shapes.MAX_OBJECTS else 0
            if head:
                out += [{2: "two", 3: "three"}[count], ","]  # "three friends: a red circle ..., a green ...": a header
                roles.append((" ".join(raw[i:i + head]), " ".join(words[i:i + head]), "count"))
                i += head
                continue
            if w in ("a", "an", "one", "single"):
                out.append("a" if w != "one" or nxt is None or _is_noun(nxt) is False else "one")
                roles.append((typed, w, "count"))
            elif count <= shapes.MAX_OBJECTS:
                out.append({2: "two", 3: "three"}.get(count, "a"))
                roles.append((typed, w, "count"))
            else:
                out.append("many")
                roles.append((typed, w, "count (refused)"))
            i += 1 + (i + 1 < n and words[i + 1] == "of")
            continue
        if w == "over" and (_next_content(words, i + 1) in (None, ",", ".", "!", "?", ";", "and") or words[
                i + 1] in ("on", "in", "at", "there", "here", "to")):
            roles.append((typed, w, "filler"))  # "..., over." (a radio call's end), "over on the left": no relation
            i += 1
            continue
        if w in RESTING and i + 2 < n and words[i + 1] in ("on", "upon") and (
                words[i + 2] in ("a", "an", "the", "another") or colour_of(words[i + 2]) is not None) and any(
                _is_noun(x) for x in words[i + 2:i + 6]) and not any(
                x in POSITION_TERMS or x in BACKGROUND_NOUNS or x in (",", ".", "!", "?", ";") for x in words[i + 2:i + 4]):
            roles.append((" ".join(raw[i:i + 2]), " ".join(words[i:i + 2]), "relation"))
            out.append("above")  # "a yellow square perched on a green square": the first stands on the second
            i += 2
            continue
        if w in RELATIONS:
            roles.append((typed, w, "relation"))
            out.append(RELATIONS[w])
            if i + 1 < n and words[i + 1] in ("that", "this", "which"):  # "under that": of the object before
                out.append("it")
                i += 1
            i += 1
            continue
        what = _next_content(words, i + 1 + (i + 1 < n and words[i + 1] in ("the", "four", "nine")))
        if w in ("every", "each", "all") and what in ("cell", "cells", "corner", "corners", "spot", "spots", "place",
                                                      "places", "position"):
            many = 4 if what in ("corner", "corners") else 9
            refuse("count", f"a scene holds at most {shapes.MAX_OBJECTS} objects; {' '.join(raw[i:i + 2])!r} asks "
                            f"for {many}.", typed)
            roles.append((typed, w, "count (refused)"))
            i += 1
            continue
        after = _next_content(words, i + 1 + (w == "instead"))
        after = _next_content(words, i + 2 + (w == "instead")) if after in ("the", "a", "an") else after
        if (instruction and (w in ("not", "than") or w == "instead" and i + 1 < n and words[i + 1] == "of"
                             or w == "from" and "to" in words[i + 2:i + 5])
                or w == "not" and i > 0 and words[i - 1] == ","
                or instruction and w in ("was", "formerly", "previously") and i > 0 and (
                    words[i - 1] == "," or colour_of(words[i - 1]) is not None)  # "Background: white (was grey)"
                ) and after is not None and (
                colour_of(after) is not None or _shape_of(after) is not None):
            negated = True  # "black, not grey", "grey instead of white", "from white to grey": the old value
            roles.append((typed, w, "structure"))
            i += 1 + (w == "instead")
            continue
        if instruction and w in ("go", "goes") and i + 1 < n and words[i + 1] == "over" and (
                _next_content(words, i + 2) in ("it", "the", "that", "this", "them")):
            last_verb, colour_verb = "redo", True  # "go over it in navy blue": a tattooist's recolouring
            roles.append((" ".join(raw[i:i + 2]), " ".join(words[i:i + 2]), "verb"))
            if not out or out[-1] != "make":
                out.append("make")
            i += 2
            continue
        if instruction and w == "with" and last_verb in ("fill", "paint", "colour", "color", "shade", "dye", "tint",
                                                         "redo", "make") and _colour_at(words, i + 1) is not None:
            roles.append((typed, w, "filler"))  # "fill the triangle in with navy": the new colour follows
            i += 1
            continue
        if instruction and w in ("go", "goes", "going", "went", "gone") and _colour_at(words, i + 1) is not None:
            last_verb, colour_verb = w, True  # "the triangle must go golden", "the blue one goes green": a change
            roles.append((typed, w, "verb"))
            if not out or out[-1] != "make":
                out.append("make")
            i += 1
            continue
        if w == "no" and i + 1 < n and words[i + 1] in ("one", "body"):
            roles.append((" ".join(raw[i:i + 2]), "no " + words[i + 1], "filler"))  # "tell no one": nobody, no object
            i += 2
            continue
        if instruction and (w in ("go", "leave") and i > 0 and words[i - 1] in ("to", "must", "can", "should", "gotta",
                                                                                "will", "may")
                            and _next_content(words, i + 1) in (None, ",", ".", "!", "?", "please", "sorry", "thanks")
                            or w == "no" and _next_content(words, i + 1) is not None and (
                                _is_noun(_next_content(words, i + 1)) or colour_of(_next_content(words, i + 1)))):
            roles.append((typed, w, "verb"))
            if out and out[-1] == "to":
                out.pop()  # "you are cleared to leave"
            out.append("remove")
            i += 1
            continue
        if instruction and _phrasal_remove(words, i):
            roles.append((typed, w, "verb"))  # "the circle comes off", "take the square off", "do without the red one"
            out.append("remove")
            i += 1
            continue
        if instruction and w in ("with", "for", "by") and last_verb in ("replace", "swap", "switch", "exchange"):
            roles.append((typed, w, "structure"))
            out.append("into")
            i += 1
            continue
        if instruction and w == "out" and last_verb in ("swap", "switch", "replace", "exchange", "change"):
            roles.append((typed, w, "structure"))  # "swap the grey background out for black"
            i += 1
            continue
        onto = _onto_background(words, i) if instruction and w in ("put", "place", "set", "stick", "pop") else 0
        if onto:
            roles.append((" ".join(raw[i:i + onto]), " ".join(words[i:i + onto]), "verb"))
            i += onto  # "put it on a grey background": the background changes, nothing is added
            continue
        if instruction and w in ("be", "get", "gets") and i + 1 < n and words[i + 1] in REMOVE_VERBS + ADD_VERBS:
            roles.append((typed, w, "filler"))  # "is to be removed", "gets deleted": the verb after it says the edit
            if out and out[-1] == "to":
                out.pop()
            i += 1
            continue
        if instruction and w in ("paint", "dye") and out and out[-1] in shapes.COLOURS:
            roles.append((typed, w, "filler"))  # "a coat of emerald paint": the colour's noun, not a verb
            i += 1
            continue
        if instruction and w in CHANGE_VERBS + REMOVE_VERBS + ADD_VERBS:
            last_verb = w
            verb = "make" if w in CHANGE_VERBS else ("remove" if w in REMOVE_VERBS else "add")
            if w in ("drop", "throw") and i + 1 < n and words[i + 1] in ("a", "an", "in"):
                verb = "add"  # "drop a blue triangle into the corner": an object brought in
            if w in ("draw", "put", "place") and any(r == "remove" for r in out):
                verb = "add"
            colour_verb = colour_verb or verb == "make"
            roles.append((typed, w, "verb"))
            if not out or out[-1] != verb:
                out.append(verb)
            i += 1
            continue
        if w in ("all", "every", "each") and i + 1 < n and words[i + 1].isalpha() and not (
                _is_noun(words[i + 1]) or colour_of(words[i + 1]) is not None or words[i + 1] in MODIFIERS
                or words[i + 1] in COUNT_TERMS or words[i + 1] in POSITION_TERMS or words[i + 1] in BACKGROUND_NOUNS
                or words[i + 1] in STRUCTURE + ("these", "those", "my", "our", "your", "his", "her", "their", "over",
                                                "around", "along", "across", "round", "together", "at", "in", "on")):
            roles.append((typed, w, "filler"))  # "all units", "every time": not the objects
            i += 1
            continue
        if w in (",", ";"):
            after_colour = False
        if w in (",", ";", "then", "and", "with", "plus", "also") or w in ("it", "them", "the", "one", "ones",
                                                                             "thing", "things", "something", "both",
                                                                             "all", "each", "into", "to") or \
                w in VAGUE_NOUNS:
            word = {";": ",", "plus": "and", "with": "and", "also": "and", "then": "and", "ones": "one",
                    "things": "thing", "something": "thing", "shapes": "thing", "shape": "thing", "object": "thing",
                    "objects": "thing", "items": "thing", "item": "thing", "figure": "thing", "figures": "thing",
                    "form": "thing", "forms": "thing"}.get(w, "thing" if w in MADE_UP_NOUNS else w)  # "thingy"
            if word == "the" and i + 1 < n and (_next_content(words, i + 1) in POSITION_TERMS
                                                 or words[i + 1] in BACKGROUND_NOUNS):
                pass
            elif not (word in (",", "and") and (not out or out[-1] in (",", "and"))):
                out.append(word)
            roles.append((typed, w, "structure"))
            i += 1
            continue
        # an unknown word: refused where a colour or shape must stand, a filler elsewhere
        known = w in vocabulary()
        nxt = _next_content(words, i + 1)
        if not known and nxt is not None and _shape_of(nxt) is not None and (i == 0 or words[i - 1] in COUNT_TERMS
                                                                              or words[i - 1] in MODIFIERS
                                                                              or words[i - 1] in ("the", "some")):
            refuse("slot", f"{typed!r} stands where a colour goes, and the writer does not know it as a colour; "
                           f"objects can be red, green, blue or yellow.", typed)
            roles.append((typed, w, "colour slot (unknown)"))
        elif not known and instruction and i > 0 and words[i - 1] in ("one", "ones") and (
                nxt is None or nxt in (",", ".", "!", "?")):
            refuse("slot", f"{typed!r} stands where the new colour or shape goes, and the writer does not know it; "
                           f"objects can be red, green, blue or yellow circles, squares or triangles.", typed)
            roles.append((typed, w, "value slot (unknown)"))  # "paint the golden one blse"
        elif not known and after_colour and nxt is not None and nxt not in vocabulary() and nxt.isalpha():
            roles.append((typed, w, "filler"))  # "a green lightning bolt": the shape's noun is the last unknown word
            i += 1
            continue
        elif not known and after_colour and (nxt is None or nxt in (",", ".", "and", "with") or nxt in POSITION_TERMS
                                             or nxt in ("in", "on", "at", "along", "across")) \
                or after_colour and nxt in ("shape", "shaped") and w.isalpha() and w not in MODIFIERS:
            refuse("shape", f"{typed!r} stands where a shape goes, and the shapes world has no {typed}; "
                            f"it draws circles, squares and triangles.", typed)
            roles.append((typed, w, "shape slot (unknown)"))
        else:
            roles.append((typed, w, "filler"))
        after_colour = False
        i += 1
    out = _corrected(out)
    if not instruction:
        out = _row_and_column_joined(out)
        out = _announcements_dropped(out)
        out = _background_last(out)
    content = set(shapes.COLOURS) | set(shapes.SHAPES) | {"thing", "one", PLURAL}
    out = [w for k, w in enumerate(out) if not (w in ("a", "one") and k + 1 < len(out) and out[k + 1] not in content)]
    out = [w for k, w in enumerate(out) if not (w in ("the", "to", "into") and (
        k + 1 == len(out) or out[k + 1] in (",", "and", "the", "a", "to", "into"))) and not (
        w == "to" and k + 1 < len(out) and out[k + 1] in _POSITION_PHRASE.values())]  # "one yellow circle, to the right"
    while out and out[-1] in (",", "and"):
        out.pop()
    while out and out[0] in (",", "and"):
        out.pop(0)
    if not second_pass:
        out = lines_as_cells([w for w in out if w != PLURAL])
    elif instruction:
        clauses = arrange_instruction(out)
        out = CLAUSE.join(in_model_words(c) for clause in clauses for c in clause.split(CLAUSE)).split(" ") \
            if clauses else lines_as_cells(out)
    else:
        out = arrange_request(out)
    out = [w for w in out if w != PLURAL]
    if not instruction and fail is None:
        objects = 0
        for k, w in enumerate(out):
            j = k - 1
            while j >= 0 and out[j] in shapes.COLOURS:
                j -= 1
            if w in shapes.SHAPES or w == "thing" and j < k - 1:  # a shape noun, or "a red thing"
                objects += {"two": 2, "three": 3, "many": 3}.get(out[j], 1) if j >= 0 else 1
        if objects > shapes.MAX_OBJECTS:
            fail = refusal("count", f"a scene holds at most {shapes.MAX_OBJECTS} objects; this request names {objects}.",
                           str(objects))
    return Reading(text, " ".join(out).replace(" ,", ","), roles, fail)


def slip_kept(text: str) -> bool:
    """Return True when `text` holds an English word the reader keeps as typed (meant_as_typed) although one slip away
    from it lies a slot word ("bell" for "ball", "lift" for "left"): the typo data's slips that spell another word."""
    if not isinstance(text, str):
        raise CourseInputError(f"text must be a string, got {type(text).__name__}.")
    for w in _words(text.rpartition(SCENE)[2]):
        c = correct(w)
        if c != w and meant_as_typed(w, c) and (_basic(c) or colour_of(c) is not None or c in CHANGE_VERBS
                                                 or c in REMOVE_VERBS or c in ADD_VERBS):
            return True
    return False


def model_input(prompt: str, *, second_pass: bool = True) -> tuple[str, WriterError | None]:
    """Return (what the writer's model reads, the reader's refusal or None) for a writer input.   [nb 09]

    A request is read whole. Of an edit input '<source caption><|scene|><instruction>' the model
    reads '<|scene|>' and the instruction as the reader leaves it (instruction=True): it names the
    objects as the instruction does, and the world finds them in the source scene (referents).
    second_pass=False: the first pass's words only (read), the model's training inputs.
    """
    if not isinstance(prompt, str):
        raise CourseInputError(f"prompt must be a string, got {type(prompt).__name__}.")
    source, sep, text = prompt.rpartition(SCENE)
    reading = read(text, instruction=bool(sep), second_pass=second_pass)
    if sep and second_pass and reading.refusal is None:
        return sep + reading.model_text, _too_many_added(source, reading.model_text)
    return sep + reading.model_text, reading.refusal


def _too_many_added(source: str, model_text: str) -> WriterError | None:
    # "add three more triangles" to a scene of two: more objects than a scene holds (None when they fit, or when the
    # source is no caption, which the caller checks)
    words = model_text.replace(",", " ,").split()
    added = sum({"two": 2, "three": 3, "many": shapes.MAX_OBJECTS + 1}.get(words[k + 1], 1)
                for k, w in enumerate(words[:-1]) if w == "add")
    try:
        held = len(shapes.parse_caption(source)["objects"])
    except CourseInputError:
        return None
    if added > 1 and held + added > shapes.MAX_OBJECTS:
        return refusal("count", f"a scene holds at most {shapes.MAX_OBJECTS} objects; this one holds {held} and the "
                                f"instruction adds {added}.", str(added))
    return None
