"""Token alignment: which words two prompts share, which changed, and where a word sits in the padded sequence.   [nb 08]

Positions are those of the padded sequence the text encoder reads: 0 is the start token, the
words follow from 1, then the end token and padding up to tokenizer.model_max_length (L).
Prompt-to-prompt's controllers and local blending, and the attention masks, index by them.
"""

from __future__ import annotations

import difflib

import torch

from course_lib.validation import CourseInputError, check_number


def word_ids(tokenizer, prompt: str, name: str = "prompt") -> list[int]:
    """Return the token ids of `prompt`'s words (no start or end token); raise if the prompt does not fit L tokens."""
    if not isinstance(prompt, str):
        raise CourseInputError(f"{name} must be a str, got {type(prompt).__name__}.")
    ids = tokenizer(prompt, add_special_tokens=False, verbose=False).input_ids
    if len(ids) + 2 > tokenizer.model_max_length:
        raise CourseInputError(f"{name} {prompt[:60]!r}... is {len(ids) + 2} tokens long (with its start and end tokens), "
                               f"but the text encoder reads at most {tokenizer.model_max_length}: shorten it.")
    return ids


def _words(tokenizer, ids) -> list[str]:
    return [t.replace("</w>", "") for t in tokenizer.convert_ids_to_tokens(list(ids))]


def check_edit_prompts(tokenizer, source_prompts: list[str], target_prompts: list[str]) -> None:
    """Raise if a target prompt asks for no change the tokenizer can see (the same tokens as its source prompt)."""
    for source, target in zip(source_prompts, target_prompts):
        if source == target:
            raise CourseInputError(f"the target prompt is the source prompt ({source!r}): there is nothing to edit. "
                                   f"Change the words that should change, e.g. a colour or a shape.")
        if word_ids(tokenizer, source, "source_prompt") == word_ids(tokenizer, target, "target_prompt"):
            raise CourseInputError(f"{source!r} and {target!r} differ only in what the tokenizer drops or cannot "
                                   f"read (case, spacing, unknown words): they encode the same. Use words the model "
                                   f"knows (text.known_words(tokenizer)).")


def changed_positions(tokenizer, source_prompt: str, target_prompt: str) -> tuple[list[int], list[int]]:
    """Return the token positions (padded sequence, start token = 0) of the words that differ: (in source, in target).   [nb 08]

    From difflib's alignment of the two token lists: a swapped word is in both, an added one only in
    the target, a removed one only in the source. These are the words local blending follows.
    """
    src = word_ids(tokenizer, source_prompt, "source_prompt")
    tgt = word_ids(tokenizer, target_prompt, "target_prompt")
    in_source, in_target = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=src, b=tgt, autojunk=False).get_opcodes():
        if op != "equal":
            in_source += [i + 1 for i in range(i1, i2)]
            in_target += [j + 1 for j in range(j1, j2)]
    return in_source, in_target


MAPPER_MODES = ("swap", "refine", "auto")


def token_mapper(tokenizer, source_prompt: str, target_prompt: str, mode: str = "swap") -> torch.Tensor:
    """Return mapper (L,): the source token position each target position takes its attention map from, -1 for none.   [P2P, nb 08]

    Positions are those of the padded sequence (0 = start token, words from 1). mode 'swap': the
    prompts must have the same number of tokens (words swapped one for one), every position maps to
    itself; otherwise CourseInputError names the words without a counterpart. mode 'refine': words
    common to both prompts (difflib alignment) map to their source position; new words keep their own.
    mode 'auto': 'swap' when the prompts have as many tokens, else 'refine'.
    """
    if mode not in MAPPER_MODES:
        raise CourseInputError(f"mode must be 'swap', 'refine' or 'auto' (swap when the prompts align), got {mode!r}.")
    length = tokenizer.model_max_length
    src = word_ids(tokenizer, source_prompt, "source_prompt")
    tgt = word_ids(tokenizer, target_prompt, "target_prompt")
    if mode == "auto":
        mode = "swap" if len(src) == len(tgt) else "refine"
    if mode == "swap":
        if len(src) != len(tgt):
            ops = difflib.SequenceMatcher(a=src, b=tgt, autojunk=False).get_opcodes()
            unmatched = []
            for _, i1, i2, j1, j2 in ops:
                a, b = " ".join(_words(tokenizer, src[i1:i2])), " ".join(_words(tokenizer, tgt[j1:j2]))
                if i2 - i1 != j2 - j1:  # an equal-length replacement is a proper swap
                    unmatched.append(f"{b!r} (added)" if not a else f"{a!r} (removed)" if not b else f"{a!r} -> {b!r}")
            raise CourseInputError(
                f"a word swap needs prompts that align token by token, but {source_prompt!r} has {len(src)} tokens "
                f"and {target_prompt!r} has {len(tgt)}; words without a counterpart: {'; '.join(unmatched)}. "
                f"Swap words one for one, or use mode='refine'.")
        return torch.arange(length)
    mapper = torch.full((length,), -1, dtype=torch.long)
    mapper[0] = 0  # start token
    for block in difflib.SequenceMatcher(a=src, b=tgt, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            mapper[block.b + k + 1] = block.a + k + 1
    for j in range(len(tgt) + 1, length):  # end token and padding, aligned from the end token on
        i = j - len(tgt) + len(src)
        if i < length:
            mapper[j] = i
    return mapper


def token_positions(tokenizer, prompt: str, word: str) -> list[int]:
    """Return the positions (in the padded sequence, start token = 0) of `word`'s tokens in `prompt`; raise if absent."""
    ids, wanted = word_ids(tokenizer, prompt), word_ids(tokenizer, word, "word")
    if not wanted:
        raise CourseInputError(f"the word {word!r} has no tokens.")
    for i in range(len(ids) - len(wanted) + 1):
        if ids[i: i + len(wanted)] == wanted:
            return [i + 1 + k for k in range(len(wanted))]
    raise CourseInputError(f"the word {word!r} is not in the prompt {prompt!r} (its words: {_words(tokenizer, ids)}).")


def reweighted_positions(tokenizer, prompt: str, reweight: tuple[tuple[str, float], ...]) -> list[int]:
    """Return the positions (padded sequence, start token = 0) of the re-weighted words that `prompt` holds, sorted."""
    out = set()
    for word, _ in reweight:
        try:
            out.update(token_positions(tokenizer, prompt, word))
        except CourseInputError:  # a word of the target that the source does not hold
            continue
    return sorted(out)


def check_reweight(reweight) -> tuple[tuple[str, float], ...]:
    """Return {word: scale} as ((word, scale), ...) if every scale is a finite number > 0, else raise.

    A scale of 1 leaves the word's attention alone, 2 doubles it, 0.5 halves it; NaN, infinities,
    zero and negative scales have no meaning as an attention weight and are refused.
    """
    if not hasattr(reweight, "items"):
        raise CourseInputError(f"reweight must be a dict {{word of the target prompt: scale}}, e.g. {{'red': 2.0}}, "
                               f"got {type(reweight).__name__}.")
    out = []
    for word, scale in reweight.items():
        if not isinstance(word, str) or not word.strip():
            raise CourseInputError(f"reweight's keys must be words of the target prompt, got {word!r}.")
        out.append((word, check_number(scale, f"reweight[{word!r}]", low=0, low_open=True,
                                       hint="the factor on the word's cross-attention: 1 keeps it, 2 doubles it")))
    return tuple(out)


def reweight_scales(tokenizer, target: str, reweight: tuple[tuple[str, float], ...]) -> torch.Tensor:
    """Return scales (L,): the factor on each token position's cross-attention, 1 where no word is re-weighted."""
    scales = torch.ones(tokenizer.model_max_length)
    for word, scale in reweight:
        for pos in token_positions(tokenizer, target, word):
            scales[pos] = scale
    return scales
