"""Probes of course_lib.language: bad and unusual inputs to every public function, and what each must do.

Each row of REFUSED is (what, a call, the error class, a regex its message must match: it names the
parameter or says what to change). The writer's refusals are WriterErrors (a CourseInputError). The
ACCEPTED tests check unusual inputs a user may reasonably pass (int seeds, numpy integers) against
an independent result, and that the writer never runs past its model's positions.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from course_lib import language, shapes
from course_lib.language import WriterError
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

SCENE = shapes.Scene((shapes.ShapeObject("circle", "red", 1, 0), shapes.ShapeObject("square", "green", 0, 1)), "black")
SOURCE = shapes.caption(SCENE)
EMPTY = shapes.Scene((), "grey")
CASES = shapes.edit_cases(2, seed=1)
LONG_REQUEST = "a red ball in the top left and " * 40  # the probe: 321 tokens for a model of 128 positions


@pytest.fixture(scope="module")
def writer():
    return language.load_writer()


@pytest.fixture(scope="module")
def random_writer(writer):
    """A writer with the shipped tokenizer and a randomly initialised model: it rarely ends its answer early."""
    return language.PromptWriter(language.make_model(writer.tokenizer, seed=0).eval(), writer.tokenizer)


REFUSED = [
    # words and door checks
    ("check_split heldout", lambda w: language.check_split("heldout"), CourseInputError, "split must be 'train' or 'test'"),
    ("check_text None", lambda w: language.check_text(None, "request"), CourseInputError, "request must be a string"),
    ("check_text blank", lambda w: language.check_text("  ", "request"), CourseInputError, "request is empty"),
    ("as_rng of a string", lambda w: language.as_rng("0"), CourseInputError, "rng must be a random.Random or an int seed"),
    ("as_rng of a bool", lambda w: language.as_rng(True), CourseInputError, "rng must be a random.Random"),
    ("as_rng of a torch generator", lambda w: language.as_rng(torch.Generator()), CourseInputError, "random.Random"),
    # typos
    ("typo of a number", lambda w: language.typo(3, 0), CourseInputError, "word must be a string"),
    ("typo, rng None", lambda w: language.typo("triangle", None), CourseInputError, "rng must be"),
    ("add_typo of None", lambda w: language.add_typo(None, 0), CourseInputError, "text must be a string"),
    # requests -> captions
    ("request of an empty scene", lambda w: language.request_example(EMPTY, 0), CourseInputError, "at least one object"),
    ("request of a caption", lambda w: language.request_example(SOURCE, 0), CourseInputError, "scene must be a shapes.Scene"),
    ("request, split heldout", lambda w: language.request_example(SCENE, 0, "heldout"), CourseInputError, "split must be"),
    ("request, rng a float", lambda w: language.request_example(SCENE, 0.5), CourseInputError, "rng must be"),
    ("refusal of an empty scene", lambda w: language.refusal_request(EMPTY, 0), CourseInputError, "at least one object"),
    ("object_words of a dict", lambda w: language.object_words({"colour": "red"}, 0), CourseInputError, "ShapeObject"),
    # instructions -> canonical instructions
    ("phrase_edit of a dict", lambda w: language.phrase_edit(SCENE, {"kind": "remove"}, 0), CourseInputError,
     "edit must be a shapes.Edit"),
    ("phrase_edit, index out of range", lambda w: language.phrase_edit(SCENE, shapes.Edit("remove", index=5), 0),
     CourseInputError, "out of range"),
    ("phrase_edit of a no-op edit", lambda w: language.phrase_edit(SCENE, shapes.Edit("background", value="black"), 0),
     CourseInputError, "already black"),
    ("edit_prompt, empty caption", lambda w: language.edit_prompt("", "make it blue"), CourseInputError,
     "source_caption is empty"),
    ("edit_prompt, instruction None", lambda w: language.edit_prompt(SOURCE, None), CourseInputError,
     "instruction must be a string"),
    ("edit_prompt, separator inside", lambda w: language.edit_prompt(SOURCE, f"x{language.SCENE}y"), CourseInputError,
     "must not contain the separator"),
    ("instruction_example, g None", lambda w: language.instruction_example(SCENE, None, 0), CourseInputError,
     "g must be a torch.Generator or an int seed"),
    ("instruction_example, g a string", lambda w: language.instruction_example(SCENE, "g", 0), CourseInputError,
     "g must be a torch.Generator"),
    ("instruction_example of a caption", lambda w: language.instruction_example(SOURCE, 0, 0), CourseInputError,
     "scene must be a shapes.Scene"),
    # the data set, the tokenizer and the model
    ("normalise None", lambda w: language.normalise(None), CourseInputError, "text must be a string"),
    ("examples, n negative", lambda w: language.examples(-1), CourseInputError, "n must be an int >= 0"),
    ("examples, n a float", lambda w: language.examples(2.5), CourseInputError, "n must be an int"),
    ("examples, seed negative", lambda w: language.examples(2, -1), CourseInputError, "seed must be an int >= 0"),
    ("examples, split heldout", lambda w: language.examples(2, 0, "heldout"), CourseInputError, "split must be"),
    ("examples, typo_rate 1.5", lambda w: language.examples(2, typo_rate=1.5), CourseInputError,
     r"typo_rate must be a finite number in \[0, 1\]"),
    ("examples, typo_rate NaN", lambda w: language.examples(2, typo_rate=float("nan")), CourseInputError, "typo_rate"),
    ("examples, a misspelt kind", lambda w: language.examples(2, kinds=("requests",)), CourseInputError,
     "kinds must be a non-empty sequence of"),
    ("examples, no kinds", lambda w: language.examples(2, kinds=()), CourseInputError, "kinds must be a non-empty"),
    ("build_tokenizer, no texts", lambda w: language.build_tokenizer([]), CourseInputError, "texts must be a non-empty list"),
    ("build_tokenizer, numbers", lambda w: language.build_tokenizer([1, 2]), CourseInputError, "list of strings"),
    ("build_tokenizer, vocab 10", lambda w: language.build_tokenizer(["a red ball"], vocab_size=10), CourseInputError,
     "vocab_size must be an int >= 260"),
    ("encode_examples, no pairs", lambda w: language.encode_examples(w.tokenizer, []), CourseInputError,
     r"pairs must be a non-empty list of \(prompt, answer\)"),
    ("encode_examples, a single string", lambda w: language.encode_examples(w.tokenizer, [("a red ball",)]),
     CourseInputError, "pairs must be"),
    ("encode_examples, max_length 1", lambda w: language.encode_examples(w.tokenizer, [("a", "b")], max_length=1),
     CourseInputError, "max_length must be an int >= 2"),
    ("encode_examples, too long", lambda w: language.encode_examples(w.tokenizer, [(LONG_REQUEST, "x")]),
     CourseInputError, "exceeds max_length=128"),
    ("make_model, seed negative", lambda w: language.make_model(w.tokenizer, seed=-1), CourseInputError,
     "seed must be an int >= 0"),
    ("lm_loss of a tensor", lambda w: language.lm_loss(w.model, torch.zeros(2, 3)), CourseInputError,
     "batch must be a dict with input_ids"),
    # refusals and resolving
    ("check_refusal of None", lambda w: language.check_refusal(None, "x"), CourseInputError, "answer must be"),
    ("check_refusal, contradiction", lambda w: language.check_refusal("contradiction", "make it red and blue"),
     WriterError, "contradict"),
    ("check_refusal, unsupported", lambda w: language.check_refusal("unsupported: violet", "a violet ball"),
     WriterError, "no 'violet'"),
    ("resolve_request of None", lambda w: language.resolve_request(None, "a red ball"), CourseInputError, "answer must be"),
    ("resolve_request, not a scene", lambda w: language.resolve_request("a red blob", "r"), WriterError, "not a scene"),
    ("resolve_edit, empty caption", lambda w: language.resolve_edit("remove the red circle on the left", "", "x"),
     CourseInputError, "source_caption is empty"),
    ("resolve_edit, unreadable caption", lambda w: language.resolve_edit("make the background white", "a red blob", "x"),
     CourseInputError, "cannot read"),
    ("resolve_edit, not an edit", lambda w: language.resolve_edit("make the blue circle red", SOURCE, "x"), WriterError,
     "no blue circle in the scene"),
    ("resolved, kind unknown", lambda w: language.resolved("caption", "a red ball", "a red circle in the middle"),
     CourseInputError, "kind='caption' is not known"),
    ("resolved, answer None", lambda w: language.resolved("request", "a red ball", None), CourseInputError,
     "answer must be"),
    # the guard
    ("read of None", lambda w: language.read(None), CourseInputError, "text must be a string"),
    # the writer
    ("generate an int", lambda w: w.generate(5), CourseInputError, "prompts must be a string or a list of strings"),
    ("generate a list of ints", lambda w: w.generate([1]), CourseInputError, "prompts must be"),
    ("generate, batch_size 0", lambda w: w.generate(["a red ball"], batch_size=0), CourseInputError,
     "batch_size must be an int >= 1"),
    ("generate, over-long input", lambda w: w.generate([LONG_REQUEST]), WriterError, "at most 88 tokens"),
    ("answer, over-long input", lambda w: w.answer(LONG_REQUEST), WriterError, "128 positions"),
    ("caption, the issue's over-long request", lambda w: w.caption(LONG_REQUEST), WriterError,
     r"too long for the writer: \d+ tokens .* at most 88 tokens"),
    ("caption None", lambda w: w.caption(None), CourseInputError, "request must be a string"),
    ("caption, blank", lambda w: w.caption("   "), CourseInputError, "request is empty"),
    ("caption, an unseen colour", lambda w: w.caption("a violet ball in the middle"), WriterError, "no violet"),
    ("target_caption, over-long instruction", lambda w: w.target_caption(SOURCE, " and ".join(
        f"add a {c} {s} {p}" for c in ("red", "blue") for s in ("square", "triangle") for p in (
            "at the top", "at the bottom", "on the left", "on the right", "in the top left", "in the bottom right"))),
     WriterError, "with the source caption"),
    ("target_caption, unreadable source", lambda w: w.target_caption("a red blob", "make it blue"), CourseInputError,
     "cannot read"),
    ("target_caption, instruction a number", lambda w: w.target_caption(SOURCE, 3), CourseInputError,
     "instruction must be a string"),
    ("save_writer of a model", lambda w: language.save_writer(w.model, "/tmp/never_written"), CourseInputError,
     "writer must be a language.PromptWriter"),
    ("load_writer, a device that does not exist", lambda w: language.load_writer(device="banana"), CourseInputError,
     "device must be"),
    ("check_device, a number", lambda w: language.load_writer(device=1.5), CourseInputError, "device must be"),
    # editing from an instruction: refused before anything is drawn (parts=None is never touched)
    ("edit, method unknown", lambda w: language.edit_from_instruction(w, None, None, SOURCE, "remove the ball", method="paint"),
     CourseInputError, "method must be one of"),
    ("edit, writer a model", lambda w: language.edit_from_instruction(w.model, None, None, SOURCE, "remove the ball"),
     CourseInputError, "writer must be a language.PromptWriter"),
    ("edit, generator a string", lambda w: language.edit_from_instruction(w, None, None, SOURCE, "remove the ball",
                                                                          generator="0"), CourseInputError,
     "generator must be a torch.Generator, an int seed"),
    ("edit, an unseen word", lambda w: language.edit_from_instruction(w, None, None, SOURCE, "make the ball violet"),
     WriterError, "no violet"),
    # the real-LLM path
    ("load_instruction_model, id a number", lambda w: language.load_instruction_model(5), CourseInputError,
     "model_id must be a string"),
    ("load_instruction_model, dtype a string", lambda w: language.load_instruction_model(language.NAME, dtype="half"),
     CourseInputError, "dtype must be a torch.dtype"),
    ("expand_prompt, max_new_tokens 0", lambda w: language.expand_prompt(w.model, w.tokenizer, "a red ball", max_new_tokens=0),
     CourseInputError, "max_new_tokens must be an int >= 1"),
    ("expand_prompt, empty", lambda w: language.expand_prompt(w.model, w.tokenizer, ""), CourseInputError, "request is empty"),
    ("expand_prompt, past the positions", lambda w: language.expand_prompt(w.model, w.tokenizer, LONG_REQUEST),
     CourseInputError, "the model has 128 positions"),
    # measuring
    ("attribute_scores of None", lambda w: language.attribute_scores(None, "a red circle in the middle"), CourseInputError,
     "takes two strings"),
    ("score_answers, nothing", lambda w: language.score_answers([], []), CourseInputError, "no answers to score"),
    ("score_answers, lengths differ", lambda w: language.score_answers(["a"], ["a", "b"]), CourseInputError,
     "got 1 answers for 2"),
    ("score_answers of a string", lambda w: language.score_answers("abc", "abc"), CourseInputError, "list of strings"),
    ("evaluate, n 2", lambda w: language.evaluate(w, n=2), CourseInputError, "n must be an int >= 5"),
    ("evaluate a model", lambda w: language.evaluate(w.model), CourseInputError, "writer must be a language.PromptWriter"),
    ("benchmark_instructions of captions", lambda w: language.benchmark_instructions([SOURCE]), CourseInputError,
     "cases must be a list of shapes.EditResult"),
    ("benchmark_instructions, seed negative", lambda w: language.benchmark_instructions(CASES, seed=-1), CourseInputError,
     "seed must be an int >= 0"),
    ("writer_targets, one instruction short", lambda w: language.writer_targets(w, CASES, ["remove it"]), CourseInputError,
     "got 1 instructions for 2 cases"),
    ("request_set, n negative", lambda w: language.request_set(-1), CourseInputError, "n must be an int >= 0"),
    ("end_to_end, n 0", lambda w: language.end_to_end(w, None, n=0), CourseInputError, "n must be an int >= 1"),
    ("end_to_end, guidance NaN", lambda w: language.end_to_end(w, None, n=2, guidance_scale=float("nan")), CourseInputError,
     "guidance_scale must be a finite number"),
    ("end_to_end, num_steps 0", lambda w: language.end_to_end(w, None, n=2, num_steps=0), CourseInputError,
     "num_steps must be an int >= 1"),
    # training
    ("train_writer, steps 0", lambda w: language.train_writer(steps=0), CourseInputError, "steps must be an int >= 1"),
    ("train_writer, no examples", lambda w: language.train_writer(num_examples=0), CourseInputError,
     "num_examples must be an int >= 1"),
    ("train_writer, seed negative", lambda w: language.train_writer(seed=-1), CourseInputError, "seed must be an int >= 0"),
]


@pytest.mark.parametrize("what,call,error,match", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_a_clear_message(writer, what, call, error, match):
    with pytest.raises(error, match=match):
        call(writer)


def test_cuda_without_a_gpu_is_refused_before_loading():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(CourseInputError, match="no CUDA device"):
        language.load_writer(device="cuda")
    with pytest.raises(CourseInputError, match="no CUDA device"):
        language.load_instruction_model(language.NAME, "cuda")


# ----------------------------------------------------------------------------------------------
# Unusual inputs that are right to accept, each against an independent result
# ----------------------------------------------------------------------------------------------

def test_int_seeds_where_a_random_source_is_taken():
    assert language.typo("triangle", 3) == language.typo("triangle", random.Random(3))
    assert language.add_typo("a yellow triangle", np.int64(2)) == language.add_typo("a yellow triangle", random.Random(2))
    assert language.request_example(SCENE, 5) == language.request_example(SCENE, random.Random(5))
    assert language.refusal_request(SCENE, 5, "test") == language.refusal_request(SCENE, random.Random(5), "test")
    edit = shapes.Edit("colour", index=0, value="blue")
    assert language.phrase_edit(SCENE, edit, 1) == language.phrase_edit(SCENE, edit, random.Random(1))
    assert language.instruction_example(SCENE, 4, 2) == \
        language.instruction_example(SCENE, torch.Generator().manual_seed(4), random.Random(2))


def test_numpy_integers_and_single_kinds():
    assert language.examples(np.int64(6), np.int64(1)) == language.examples(6, 1)
    assert [k for k, _, _ in language.examples(4, kinds="refusal")] == ["refusal"] * 4
    assert language.request_set(np.int64(3), seed=np.int64(2)) == language.request_set(3, seed=2)
    assert language.normalise("  A Red   Ball.  ") == "a red ball"
    assert language.examples(0) == []


def test_every_generated_input_and_answer_fits_the_positions(writer):
    # no valid example is refused for its length (what the model reads: the reader's text), and every canonical
    # answer fits the tokens kept for it
    for split in ("train", "test"):
        rows = language.examples(3000, 1, split)
        read = [language.model_input(p)[0] for _, p, _ in rows]
        prompt_tokens = writer.tokenizer([t + language.SEP for t in read], add_special_tokens=False)["input_ids"]
        answer_tokens = writer.tokenizer([a + language.END for _, _, a in rows], add_special_tokens=False)["input_ids"]
        assert max(map(len, prompt_tokens)) <= writer.max_input_tokens, split
        assert max(map(len, answer_tokens)) <= language.MAX_ANSWER_TOKENS, split
    assert writer.max_input_tokens == language.MAX_LENGTH - language.MAX_ANSWER_TOKENS


def _input_of(writer, tokens: int) -> str:
    # "red red ... red" of exactly `tokens` tokens with the separator
    text = "red"
    while len(writer.tokenizer(text + language.SEP, add_special_tokens=False)["input_ids"]) < tokens:
        text += " red"
    assert len(writer.tokenizer(text + language.SEP, add_special_tokens=False)["input_ids"]) == tokens
    return text


def test_generation_never_runs_past_the_positions(random_writer, monkeypatch):
    # a random model does not stop early: at the longest input it writes until the last position (the
    # old fixed 64 new tokens ran to position 88 + 64 > 128, an IndexError inside torch)
    lengths = []
    generate = random_writer.model.generate

    def spy(**kwargs):
        ids = generate(**kwargs)
        lengths.append(ids.shape[1])
        return ids

    monkeypatch.setattr(random_writer.model, "generate", spy)
    longest = _input_of(random_writer, random_writer.max_input_tokens)
    answers = random_writer.generate([longest, _input_of(random_writer, 5)])  # one batch, padded to the longest
    assert all(isinstance(a, str) for a in answers) and answers[0]  # the short one may end at once (a random model)
    assert lengths == [random_writer.positions]  # input and answer fill the positions exactly, never more
    with pytest.raises(WriterError, match="at most 88 tokens"):
        random_writer.generate([longest + " red"])


def test_an_input_at_the_limit_is_read(writer):
    request = _input_of(writer, writer.max_input_tokens)
    assert isinstance(writer.answer(request)[0], str) and writer.generate([]) == []


def test_refusals_pass_through_resolved_and_bad_answers_are_invalid():
    assert language.resolved("refusal", "a violet ball", "unsupported: violet") == "unsupported: violet"
    assert language.resolved("request", "a red ball", "a red blob") == "invalid"
    assert language.resolved("request", "a red ball", "a red circle in the middle") == "a red circle in the middle"
    prompt = language.edit_prompt(SOURCE, "make the ball blue")
    assert language.resolved("instruction", prompt, "make the red circle on the left blue") == \
        shapes.caption(shapes.apply_edit(SCENE, shapes.Edit("colour", index=1, value="blue")))


def test_typos_within_the_budget_are_corrected_and_unknown_words_refused_only_in_a_slot():
    assert language.read("a crimsno ball in the uper left").model_text == "a red circle in the top left"
    assert language.read("a violet ball").refusal.kind == "colour"
    assert language.read("").model_text == "" and language.read("").refusal is None


def test_scores_of_one_answer():
    assert language.score_answers(["a red circle in the middle"], ["a red circle in the middle"]) == \
        {k: 1.0 for k in ("exact", *language.ATTRIBUTES)}
    assert language.score_answers(("unsupported: violet",), ("unsupported: violet",))["exact"] == 1.0
