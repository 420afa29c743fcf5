"""The course tokenizer: vocabulary, special ids, padding like the SD pipeline, save/load, unknown words."""

from __future__ import annotations

import warnings

import pytest
import torch

from course_lib import shapes, text
from course_lib.validation import CourseInputError


@pytest.fixture(scope="module")
def tokenizer():
    return text.build_tokenizer()


def test_special_ids_avoid_the_argmax_pooling_trap(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2, 3)
    assert tokenizer.eos_token_id != 2
    kwargs = text.text_config_kwargs(tokenizer)
    assert kwargs == {"vocab_size": len(tokenizer), "max_position_embeddings": text.MAX_LENGTH,
                      "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def test_every_caption_and_instruction_is_in_the_vocabulary_and_fits(tokenizer):
    scenes = shapes.sample_scenes(400, seed=5, split="train") + shapes.sample_scenes(100, seed=5, split="heldout")
    prompts = [c for s in scenes for c in shapes.captions(s).values()]
    prompts += [shapes.caption(shapes.Scene((), b)) for b in shapes.BACKGROUNDS]
    prompts += [case.instruction for case in shapes.edit_cases(20, seed=0)]
    assert all(not words for words in text.unknown_words(prompts, tokenizer))
    lengths = torch.tensor([len(tokenizer(p).input_ids) for p in prompts])
    assert int(lengths.max()) <= text.MAX_LENGTH  # nothing is ever truncated
    # the longest caption: three objects with two-word positions, "full" phrasing
    objs = tuple(shapes.ShapeObject("triangle", "yellow", r, c) for r, c in ((0, 0), (0, 2), (2, 0)))
    longest = shapes.caption(shapes.Scene(objs, "white"), "full")
    assert len(tokenizer(longest).input_ids) == 30


def test_tokenize_pads_truncates_like_the_sd_pipeline(tokenizer):
    prompts = ["A Red circle on the left, on a white background", ""]
    ids = text.tokenize(prompts, tokenizer)
    expected = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids
    assert ids.shape == (2, text.MAX_LENGTH) and torch.equal(ids, expected)
    assert text.tokens(ids[0], tokenizer)[:5] == ["<|startoftext|>", "a", "red", "circle", "on"]
    assert ids[1, :2].tolist() == [text.BOS_ID, text.EOS_ID] and (ids[1, 2:] == text.PAD_ID).all()  # the "" prompt
    long = " ".join(["red"] * 50)
    with pytest.raises(CourseInputError, match="52 tokens long with its start and end tokens; this tokenizer reads at most 32"):
        text.tokenize(long, tokenizer)  # the course refuses to drop the tail in silence
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = text.tokenize(long, tokenizer, truncation=True)[0]  # the pipeline's cut, asked for
    assert len(cut) == text.MAX_LENGTH and cut[-1] == text.EOS_ID  # truncation keeps the end token
    assert tokenizer.decode(ids[0], skip_special_tokens=True) == "a red circle on the left, on a white background"


def test_unknown_word_becomes_unk_and_is_named_in_a_warning(tokenizer):
    with pytest.warns(text.UnknownWordWarning, match="'purple', 'star'"):
        ids = text.tokenize("a purple star on the left", tokenizer)
    assert ids[0, 2].item() == text.UNK_ID and ids[0, 3].item() == text.UNK_ID
    assert text.unknown_words(["a Purple circle!", "a red circle"], tokenizer) == [["Purple", "!"], []]
    # shown every time, not once per call site
    with warnings.catch_warnings(record=True) as caught:
        for _ in range(2):
            text.tokenize("a purple star", tokenizer)
    assert sum(issubclass(w.category, text.UnknownWordWarning) for w in caught) == 2


def test_unknown_words_warn_once_per_call_with_the_known_vocabulary_at_the_callers_line(tokenizer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        text.tokenize(["a purple hexagon"] * 3 + ["a red circle", "a crimson ball"], tokenizer)
    found = [w for w in caught if issubclass(w.category, text.UnknownWordWarning)]
    assert len(found) == 1  # one warning for the whole batch, naming every unknown word once
    message = str(found[0].message)
    assert "'purple', 'hexagon', 'crimson', 'ball'" in message and "2 prompts" in message
    assert "red, " in message and "triangle" in message  # the words the model does know
    assert found[0].filename == __file__  # points at the caller, not at course_lib
    assert text.known_words(tokenizer)[:3] == text.course_words()[:3]


def test_round_trip_save_pretrained_from_pretrained(tokenizer, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer.save_pretrained(tmp_path)
    for loaded in (PreTrainedTokenizerFast.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path),
                   text.load_tokenizer(tmp_path)):
        assert loaded.get_vocab() == tokenizer.get_vocab()
        assert loaded.model_max_length == text.MAX_LENGTH
        prompts = ["a blue triangle at the top, on a grey background", "a purple thing", ""]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", text.UnknownWordWarning)
            assert torch.equal(text.tokenize(prompts, loaded), text.tokenize(prompts, tokenizer))


def test_bad_input_is_refused(tokenizer):
    with pytest.raises(CourseInputError, match="prompts"):
        text.tokenize([], tokenizer)
    with pytest.raises(CourseInputError, match="prompts"):
        text.tokenize([3], tokenizer)
    with pytest.raises(CourseInputError, match="prompts must be a str"):
        text.tokenize(None, tokenizer)  # not a bare TypeError from list(None)
    with pytest.raises(CourseInputError, match="distinct"):
        text.vocabulary(["red", "red"])
    with pytest.raises(CourseInputError, match="max_length"):
        text.build_tokenizer(max_length=2)
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    other = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")),
                                    unk_token="<unk>")
    with pytest.raises(CourseInputError, match="special token ids"):
        text.text_config_kwargs(other)
