"""A real instruction-tuned language model as the prompt writer (GPU, weights reachable).   [nb 09]

The same two from_pretrained calls load the course's writer folder (data/prompt_writer) and a real
instruction model; expand_prompt rewrites a request into a Stable Diffusion prompt with the
model's chat template when it has one.
"""

from __future__ import annotations

import torch

from course_lib import checkpoints, models
from course_lib.language.words import check_text
from course_lib.validation import CourseInputError, check_device, check_int

REAL_WRITER = "Qwen/Qwen2.5-0.5B-Instruct"  # a small open instruction model (Apache-2.0)
EXPANSION_PROMPT = ("Rewrite the user's request as one short, concrete Stable Diffusion prompt: the subject, its colours "
                    "and where things are, then the style. Answer with the prompt only.")


def load_instruction_model(model_id: str = REAL_WRITER, device=None, *, dtype=None):
    """Return (AutoModelForCausalLM, AutoTokenizer) of a causal LM folder or hub id, in eval mode.   [nb 09]

    The same two from_pretrained calls load the course's writer folder (data/prompt_writer) and a
    real instruction model; float16 on CUDA by default, float32 elsewhere.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_text(model_id, "model_id")
    device = check_device(device) if device is not None else torch.device("cpu")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise CourseInputError(f"dtype must be a torch.dtype (e.g. torch.float16) or None, got {dtype!r}.")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    path = checkpoints.checkpoint_dir(model_id) if (checkpoints.checkpoint_dir(model_id)).is_dir() else model_id
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(path)


def _positions(model) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


@torch.no_grad()
def expand_prompt(model, tokenizer, request: str, *, max_new_tokens: int = 60) -> str:
    """Return a real LM's rewrite of a request into a Stable Diffusion prompt (its chat template when it has one).   [nb 09]

    The prompt and the answer must fit the model's positions: a longer request is refused, saying the limit.
    """
    request = check_text(request, "request")
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": EXPANSION_PROMPT}, {"role": "user", "content": request}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = f"{EXPANSION_PROMPT}\nRequest: {request}\nPrompt:"
    enc = tokenizer(text, return_tensors="pt").to(models.model_device(model))
    positions, length = _positions(model), enc["input_ids"].shape[1]
    if positions is not None and length + max_new_tokens > positions:
        raise CourseInputError(f"the request is too long for this model: the instructions and the request take {length} "
                               f"tokens, plus max_new_tokens={max_new_tokens}, and the model has {positions} positions. "
                               f"Shorten the request or lower max_new_tokens.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    return tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
