"""Language models in the loop: a prompt writer trained here, and editing from plain instructions.   [notebook 09]

The text-to-image model reads its prompt through a text encoder whose tokenizer knows 43 words
(course_lib.text). A person writes "a crimson ball in the upper left" or "make the ball blue". A
small causal language model (transformers' GPT2LMHeadModel, 4 layers, its own byte-level BPE
tokenizer), trained here on pairs the shapes world generates, rewrites both into what the image
model and the editing methods were built for:

    request                      "show me a crimson ball in the upper left"
      -> caption                 "a red circle in the top left"
    source caption <|scene|> instruction
                                 "a red circle on the left, on a black background<|scene|>make the ball blue"
      -> canonical instruction   "make the red circle on the left blue"
      -> target caption          "a blue circle on the left, on a black background"   (the world applies it)

Before the model sees a text, a reader (course_lib.language.reader) reads it word by word against a
lexicon built from real data (the xkcd colour survey's and CSS4's colour names mapped onto the
world's colours in OKLab; shape, place, count and background words written down with their
source): it corrects typos by characters, rewrites each slot word into the world's own word
("cobalt" -> "blue", "upper-left corner" -> "in the top left"), lets words that name nothing pass,
and refuses, in one plain sentence, a word the world lacks where a colour, shape, count, place or
background must stand. The model then writes the caption from what the reader leaves: it learns
structure (which object sits where, what "two" applies to, which object "the ball" is), the
reader supplies the words' meaning, as a tool a language model calls.

The writer answers in the world's own small languages: a caption (objects in the order the request
names them; resolve_request sorts them into reading order) and the canonical instruction of
shapes.instruction, which shapes.read_instruction and apply_edit execute (resolve_edit), the way a
chat model's tool call is executed by the program that receives it. So the model resolves the words
("the ball", "dark", "the thing up top") and the world keeps everything else exactly.

or into one of a few refusals, each a clear message (`WriterError`):

    "unsupported: <word>"        a colour or shape the world does not have ("purple", "hexagon")
    "too many objects"           more than shapes.MAX_OBJECTS objects
    "not in the scene: <thing>"  an instruction about an object the scene does not hold
    "ambiguous: <thing>"         "the circle" in a scene with two circles
    "contradiction"              two instructions that cannot both hold ("make it red and blue")

An input longer than the writer's positions allow (PromptWriter.max_input_tokens) is refused too.

This is prompt expansion (seed 003's LLM step, without LangChain, which trains nothing): the
language model writes text; the diffusion model draws. Seed 002's fine-tuned GPT-3 "generating
images" does not exist: a causal LM trained with cross-entropy outputs tokens.

The data: `request_example` and `instruction_example` turn a scene (and an edit) into a free
phrasing and its canonical answer. Every word list holds training entries and held-out entries
(HELD_OUT): split "train" draws only the former, split "test" only the latter (new frames, word
orders and joiners, made of words the training phrasings use, plus unseen typos and unseen
unsupported words). The lexicon's colour names are split too (lexicon.lexicon_split): training draws only its "train"
names. The honest test is benchmark_set: requests and instructions written by hand for testing only
(nine parts, PARTS, each by another author: "dev" to "final7" were looked at while the writer was
tuned, the last, "final8", was kept unseen until the shipped writer's measurement), scored by heldout. Scenes come from shapes split "train" for training and "test"/"heldout" for
measuring, so no measured request describes a training scene; requests naming a held-out
colour-shape pair (shapes.HELDOUT_PAIRS) are never in training. What the writer leaves open it
fills the same way every time: an object without a shape is a square (DEFAULT_SHAPE), a lone
object without a position is in the middle.

The package, one module per section (`from course_lib import language`, then `language.name`):
    words                 word lists and frames (training, held-out), special tokens, refusals, door checks
    typos                 typo, add_typo: the one-letter errors of the data
    request_examples      requests -> captions (request_example, refusal_request)
    instruction_examples  instructions -> canonical instructions (instruction_example, phrase_edit, edit_prompt)
    dataset               examples(n, seed, split), normalise
    model                 build_tokenizer, encode_examples, make_model, lm_loss
    refusals              WriterError, check_refusal, resolve_request, resolve_edit, resolved
    lexicon               colour names of the xkcd survey and CSS4 mapped to the world's colours; slot word lists
    reader                read, model_input, correct: the text read against the lexicon before the model sees it
    arrange               the reader's second pass: objects and edits put in the training captions' order (CLAUSE)
    referents             read_part, find_referent, apply_edits: the world finds the objects an answer names
    guard                 describes: does a request ask for a caption's scene (exercise C's oracle)
    benchmark_set         the hand-written held-out requests and instructions (PARTS: dev, final, final2 ... final8)
    heldout               score_heldout, heldout_table, score_typos: the writer on them
    writer                PromptWriter, save_writer, load_writer
    instruction_edit      edit_from_instruction: the writer, then an editing method
    real_llm              load_instruction_model, expand_prompt: a real instruction model (GPU)
    measuring             evaluate, attribute_scores, score_answers, end_to_end, target_failures, ...
    writer_training       train_writer, TRAIN_CONFIG, training_data_fingerprint (the prompt_writer recipe calls them)
    figures               show_prompted_images: each prompt over the image drawn from it
"""

from course_lib.language.dataset import KINDS, examples, normalise
from course_lib.language.figures import show_colour_lexicon, show_prompted_images
from course_lib.language.guard import describes
from course_lib.language.instruction_edit import DEFAULT_EDIT_METHOD, EDIT_METHODS, InstructionEdit, \
    edit_from_instruction
from course_lib.language.instruction_examples import edit_prompt, instruction_example, phrase_edit
from course_lib.language.measuring import ATTRIBUTES, E2E_ROWS, EVALUATED_KINDS, REFERENCE_ROWS, as_read, \
    attribute_scores, benchmark_instructions, end_to_end, evaluate, request_set, score_answers, target_failures, writer_targets
from course_lib.language.model import MAX_ANSWER_TOKENS, MAX_LENGTH, MAX_NEW_TOKENS, VOCAB_SIZE, WRITER_CONFIG, \
    build_tokenizer, encode_examples, lm_loss, make_model
from course_lib.language.real_llm import EXPANSION_PROMPT, REAL_WRITER, expand_prompt, load_instruction_model
from course_lib.language.refusals import ANSWER_KINDS, RELATION, WORLD, WriterError, check_refusal, resolve_edit, \
    resolve_request, resolved
from course_lib.language.request_examples import object_words, refusal_request, request_example
from course_lib.language.typos import add_typo, typo
from course_lib.language.words import ALONE_FRAMES, BACKGROUND_FRAMES, BACKGROUND_WORDS, COLOUR_WORDS, COUNT_FRAMES, \
    COUNT_WORDS, DEFAULT_CELL, DEFAULT_SHAPE, DETERMINERS, EDIT_JOINER, END, HELD_OUT, INSTRUCTION_FRAMES, \
    INSTRUCTION_JOINERS, INSTRUCTION_PREFIXES, JOINERS, OBJECT_FRAMES, PAD, POSITION_WORDS, PREFIXES, REFERENT_FRAMES, \
    REFUSALS, RELATION_FRAMES, SCENE, SEP, SHAPE_WORDS, SPECIAL, TYPO_RATE, UNSUPPORTED, VAGUE_OBJECT_FRAMES, \
    WRITER_SPLITS, as_rng, check_split, check_text, entries
from course_lib.language.writer import NAME, PromptWriter, load_writer, save_writer
from course_lib.language.lexicon import COLOUR_CATEGORIES, MAJORITY, NEIGHBOURS, SHAPE_NOUNS, UNSUPPORTED_SHAPES, \
    ColourName, colour_lexicon, colour_names, colour_of, hex_colour, lexicon_split, oklab, why_not
from course_lib.language.arrange import CLAUSE
from course_lib.language.reader import Reading, correct, model_input, read, typo_budget, typo_distance
from course_lib.language.referents import REFERENT, apply_edits, find_referent, read_part, read_parts, referent_phrase
from course_lib.language.benchmark_set import PARTS, HeldoutInstruction, HeldoutRequest, heldout_instructions, \
    heldout_requests
from course_lib.language.heldout import LEXICON_FRAME, TARGETS, heldout_table, score_heldout, score_lexicon, score_typos, \
    summarise, target_verdicts, typo_requests
from course_lib.language.writer_training import FINGERPRINT_EXAMPLES, TRAIN_CONFIG, TRAIN_EXAMPLES, \
    training_data_fingerprint, train_writer, training_pairs

__all__ = [
    # words
    "SEP", "SCENE", "END", "PAD", "SPECIAL", "DEFAULT_SHAPE", "DEFAULT_CELL", "COLOUR_WORDS", "SHAPE_WORDS",
    "BACKGROUND_WORDS", "POSITION_WORDS", "COUNT_WORDS", "UNSUPPORTED", "OBJECT_FRAMES", "VAGUE_OBJECT_FRAMES",
    "COUNT_FRAMES", "JOINERS", "PREFIXES", "BACKGROUND_FRAMES", "RELATION_FRAMES", "DETERMINERS", "ALONE_FRAMES",
    "INSTRUCTION_FRAMES", "INSTRUCTION_JOINERS", "INSTRUCTION_PREFIXES", "REFERENT_FRAMES", "EDIT_JOINER", "HELD_OUT",
    "REFUSALS", "TYPO_RATE", "WRITER_SPLITS", "entries", "check_split", "check_text", "as_rng",
    # typos
    "typo", "add_typo",
    # requests -> captions
    "object_words", "request_example", "refusal_request",
    # instructions -> canonical instructions
    "phrase_edit", "edit_prompt", "instruction_example",
    # data set, tokenizer and model
    "KINDS", "normalise", "examples", "MAX_LENGTH", "MAX_NEW_TOKENS", "MAX_ANSWER_TOKENS", "WRITER_CONFIG", "VOCAB_SIZE",
    "build_tokenizer", "encode_examples", "make_model", "lm_loss",
    # refusals and resolving
    "WriterError", "WORLD", "RELATION", "ANSWER_KINDS", "check_refusal", "resolve_request", "resolve_edit", "resolved",
    # the writer
    "describes", "NAME", "PromptWriter", "save_writer", "load_writer",
    # the lexicon and the reader
    "NEIGHBOURS", "MAJORITY", "COLOUR_CATEGORIES", "SHAPE_NOUNS", "UNSUPPORTED_SHAPES", "ColourName", "oklab",
    "colour_lexicon", "colour_of", "hex_colour", "colour_names", "lexicon_split", "why_not", "Reading", "read",
    "model_input", "correct", "CLAUSE",
    "typo_budget", "typo_distance", "REFERENT", "referent_phrase", "find_referent", "read_part", "read_parts",
    "apply_edits",
    # the hand-written held-out benchmark
    "PARTS", "HeldoutRequest", "HeldoutInstruction", "heldout_requests", "heldout_instructions", "TARGETS", "score_heldout",
    "heldout_table", "summarise", "typo_requests", "score_typos", "LEXICON_FRAME", "score_lexicon", "target_verdicts",
    # editing from an instruction
    "EDIT_METHODS", "DEFAULT_EDIT_METHOD", "InstructionEdit", "edit_from_instruction",
    # the real-LLM path
    "REAL_WRITER", "EXPANSION_PROMPT", "load_instruction_model", "expand_prompt",
    # measuring
    "ATTRIBUTES", "EVALUATED_KINDS", "E2E_ROWS", "REFERENCE_ROWS", "as_read", "attribute_scores", "score_answers", "evaluate",
    "benchmark_instructions", "writer_targets", "target_failures", "request_set", "end_to_end",
    # training
    "TRAIN_EXAMPLES", "TRAIN_CONFIG", "train_writer", "training_pairs", "FINGERPRINT_EXAMPLES", "training_data_fingerprint",
    # pictures
    "show_prompted_images", "show_colour_lexicon",
]
