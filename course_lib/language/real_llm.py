"""A real instruction-tuned language model as the prompt writer (GPU, weights reachable).   [nb 09]

The same two from_pretrained calls load the course's writer folder (data/prompt_writer) and a real
instruction model; expand_prompt rewrites a request into a Stable Diffusion prompt with the
model's chat template when it has one. The code runs without the weights too: tests/test_real_llm.py
runs it end to end on a tiny, randomly initialised Qwen2ForCausalLM (REAL_WRITER's class) saved next
to the course's tokenizer with a ChatML chat template.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from course_lib import checkpoints, models
from course_lib.language.words import check_text
from course_lib.validation import CourseInputError, check_device, check_int

REAL_WRITER = "Qwen/Qwen2.5-0.5B-Instruct"  # a small open instruction model (Apache-2.0)
EXPANSION_PROMPT = ("Rewrite the user's request as one short, concrete Stable Diffusion prompt: the subject, its colours "
                    "and where things are, then the style. Answer with the prompt only.")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # "gpt2", "Qwen/Qwen2.5-0.5B-Instruct"
_WHAT_TO_PASS = (f"pass a hub id such as {REAL_WRITER!r} (the hub must be reachable, as on Colab), a folder written by "
                 f"model.save_pretrained and tokenizer.save_pretrained, or the bare name of a course folder in data/ "
                 f"(e.g. 'prompt_writer')")


def _model_source(model_id) -> Path | str:
    """Return the folder model_id names (checkpoints.checkpoint_dir) when it exists, else the hub id; refuse the rest."""
    if not isinstance(model_id, (str, Path)):
        raise CourseInputError(f"model_id must be a string or a pathlib.Path: {_WHAT_TO_PASS}; got "
                               f"{type(model_id).__name__}.")
    if isinstance(model_id, str) and not model_id.strip():
        raise CourseInputError(f"model_id is empty: {_WHAT_TO_PASS}.")
    folder = checkpoints.checkpoint_dir(model_id)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise CourseInputError(f"the folder {folder} holds no config.json, so it is not a saved model: {_WHAT_TO_PASS}.")
        if (folder / checkpoints.MANIFEST).is_file():
            checkpoints.verify(folder)  # a course checkpoint: its hashes first, as load_writer does
        return folder
    if isinstance(model_id, str) and _HUB_ID.fullmatch(model_id):
        return model_id
    raise CourseInputError(f"model_id={str(model_id)!r}: there is no folder {folder}, and it is not a hub id "
                           f"(owner/name): {_WHAT_TO_PASS}.")


def load_instruction_model(model_id: str | Path = REAL_WRITER, device=None, *, dtype=None):
    """Return (AutoModelForCausalLM, AutoTokenizer) of a causal LM folder or hub id, in eval mode.   [nb 09]

    The same two from_pretrained calls load the course's writer folder (data/prompt_writer), a folder
    written by save_pretrained, and a real instruction model from the hub; safetensors weights only.
    dtype is a floating torch.dtype: float16 on CUDA by default, float32 elsewhere. A folder that does
    not exist, or a hub id the hub does not give (unreachable, or no such model), is refused saying
    what to pass (HF_HUB_OFFLINE=1 makes an unreachable hub fail at once instead of after its retries).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = check_device(device) if device is not None else torch.device("cpu")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise CourseInputError(f"dtype must be a torch.dtype of floating point (torch.float32, torch.float16, "
                               f"torch.bfloat16) or None, got {dtype!r}.")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    source = _model_source(model_id)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if isinstance(source, Path):
            raise CourseInputError(f"could not load a causal language model and its tokenizer from the folder {source} "
                                   f"({why}); it needs config.json, safetensors weights and the tokenizer's files: "
                                   f"{_WHAT_TO_PASS}.") from exc
        raise CourseInputError(f"could not load the hub id {source!r}: the hub did not give it and it is not in the local "
                               f"cache ({why}). Check the id (e.g. {REAL_WRITER!r}) and that the hub is reachable (on Colab "
                               f"it is; HF_HUB_OFFLINE=1 fails at once where it is not), or pass a folder written by "
                               f"model.save_pretrained and tokenizer.save_pretrained.") from exc
    if not tokenizer("a", add_special_tokens=False)["input_ids"]:  # transformers builds an empty one from no files
        raise CourseInputError(f"{source} holds no tokenizer (its tokenizer turns text into no tokens): save the "
                               f"tokenizer next to the model with tokenizer.save_pretrained(folder).")
    return model.to(device).eval(), tokenizer


def _positions(model) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


@torch.no_grad()
def expand_prompt(model, tokenizer, request: str, *, max_new_tokens: int = 60) -> str:
    """Return a real LM's rewrite of a request into a Stable Diffusion prompt (its chat template when it has one).   [nb 09]

    Greedy (the same answer every time, whatever the model's generation_config says), at most
    max_new_tokens new tokens. With a chat template the model reads a system message, EXPANSION_PROMPT,
    and a user message, the request; without one, EXPANSION_PROMPT, then "Request: ...", then "Prompt:".
    The prompt and the answer must fit the model's positions: a longer request is refused, saying the limit.
    """
    if not callable(getattr(model, "generate", None)):
        raise CourseInputError(f"model must be a causal language model with generate(), the first of the two things "
                               f"load_instruction_model returns; got {type(model).__name__}.")
    if not (callable(tokenizer) and callable(getattr(tokenizer, "decode", None))):
        raise CourseInputError(f"tokenizer must be a transformers tokenizer, the second of the two things "
                               f"load_instruction_model returns; got {type(tokenizer).__name__}.")
    request = check_text(request, "request")
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": EXPANSION_PROMPT}, {"role": "user", "content": request}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)  # the template wrote its special tokens
    else:
        enc = tokenizer(f"{EXPANSION_PROMPT}\nRequest: {request}\nPrompt:", return_tensors="pt")
    enc = enc.to(models.model_device(model))
    positions, length = _positions(model), enc["input_ids"].shape[1]
    if length == 0:
        raise CourseInputError("the tokenizer turned the prompt into no tokens: pass the tokenizer saved with the model "
                               "(the second of the two things load_instruction_model returns).")
    if positions is not None and length + max_new_tokens > positions:
        raise CourseInputError(f"the request is too long for this model: the instructions and the request take {length} "
                               f"tokens, plus max_new_tokens={max_new_tokens}, and the model has {positions} positions. "
                               f"Shorten the request or lower max_new_tokens.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    return tokenizer.decode(ids[0, length:], skip_special_tokens=True).strip()
