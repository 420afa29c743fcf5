"""The prompt writer: a causal LM and its tokenizer behind a guard, answering in the world's languages.   [nb 09]

The writer's model has a fixed number of positions (MAX_LENGTH for the shipped one): an input
longer than the positions less MAX_ANSWER_TOKENS is refused with a WriterError that says the limit,
and generation never runs past the last position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from course_lib import checkpoints, models, shapes
from course_lib.language.dataset import normalise
from course_lib.language.instruction_examples import edit_prompt
from course_lib.language.model import MAX_ANSWER_TOKENS, MAX_NEW_TOKENS
from course_lib.language.reader import model_input, refusal, refusal_answer
from course_lib.language.refusals import WriterError, resolve_edit, resolve_request
from course_lib.language.arrange import CLAUSE, EVERY
from course_lib.language.words import EDIT_JOINER, SCENE, SEP, check_text
from course_lib.validation import CourseInputError, check_device, check_int

NAME = "prompt_writer"  # data/prompt_writer: GPT2LMHeadModel + its tokenizer


def _check_prompts(prompts) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else prompts
    try:
        prompts = list(prompts)
    except TypeError:
        prompts = None
    if prompts is None or not all(isinstance(p, str) for p in prompts):
        raise CourseInputError("prompts must be a string or a list of strings (writer inputs: a request, "
                               "or edit_prompt(source_caption, instruction)).")
    return prompts


@dataclass
class PromptWriter:
    """A causal LM and its tokenizer that rewrite requests into captions and instructions into target captions.   [nb 09]"""

    model: torch.nn.Module
    tokenizer: object

    @property
    def positions(self) -> int:
        """The model's number of positions: its longest input plus answer, in tokens."""
        return int(self.model.config.max_position_embeddings)

    @property
    def max_input_tokens(self) -> int:
        """The longest input the writer reads, in tokens (separator included): positions - MAX_ANSWER_TOKENS."""
        return self.positions - MAX_ANSWER_TOKENS

    def _check_lengths(self, prompts: list[str]) -> None:
        lengths = [len(ids) for ids in self.tokenizer([p + SEP for p in prompts], add_special_tokens=False)["input_ids"]]
        for prompt, n in zip(prompts, lengths):
            if n > self.max_input_tokens:
                text = prompt.split(SCENE)[-1]
                shown = text if len(text) <= 60 else text[:57] + "..."
                scene = " with the source caption" if SCENE in prompt else ""
                raise WriterError(f"{shown!r} is too long for the writer: {n} tokens{scene} ({len(prompt)} characters), "
                                  f"and the writer reads at most {self.max_input_tokens} tokens (its model has "
                                  f"{self.positions} positions and keeps {MAX_ANSWER_TOKENS} for the answer). "
                                  f"Shorten it, or split it into several requests.")

    @torch.no_grad()
    def generate(self, prompts, *, batch_size: int = 256) -> list[str]:
        """Return the raw answer to each writer input (greedy decoding, at most MAX_NEW_TOKENS tokens).

        An input longer than max_input_tokens is refused (WriterError); the answer never runs past the
        model's last position.
        """
        prompts = _check_prompts(prompts)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if not prompts:
            return []
        self._check_lengths(prompts)
        self.model.eval()
        out = []
        device = models.model_device(self.model)
        for i in range(0, len(prompts), batch_size):
            chunk = [p + SEP for p in prompts[i: i + batch_size]]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            new_tokens = min(MAX_NEW_TOKENS, self.positions - enc["input_ids"].shape[1])
            ids = self.model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
            answers = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.extend(a.strip() for a in answers)
        return out

    def generate_read(self, texts: list[str]) -> list[str]:
        """Return the model's answers to what the reader left it: an instruction split into edits (CLAUSE) is answered
        edit by edit, the answers joined by EDIT_JOINER."""
        texts = _check_prompts(texts)
        parts = [(k, SCENE + c if t.startswith(SCENE) and not c.startswith(SCENE) else c)
                 for k, t in enumerate(texts) for c in t.split(CLAUSE)]
        every = f" {EVERY} "  # "make every circle green": the model reads "the circle", its answer names every one
        answers = self.generate([p.replace(every, " the ", 1) for _, p in parts]) if parts else []
        joined: dict[int, list[str]] = {}
        for (k, p), a in zip(parts, answers):
            joined.setdefault(k, []).append(a.replace(" the ", every, 1) if every in p else a)
        return [EDIT_JOINER.join(joined[k]) for k in range(len(texts))]

    def model_input(self, prompt: str) -> tuple[str, WriterError | None]:
        """Return (what the model reads, the reader's refusal or None) for a writer input (reader.model_input)."""
        return model_input(prompt)

    def answer(self, prompts, *, guard: bool = True) -> list[str]:
        """Return the writer's answers: the reader first (guard=True), then generate() on what it leaves the model.   [nb 09]

        A text the reader refuses gets the refusal's answer ("unsupported: <word>", "too many objects")
        and never reaches the model. guard=False: the model alone, on the text as typed.
        """
        prompts = _check_prompts(prompts)
        if not guard:
            return self.generate(prompts)
        read_ = [self.model_input(p) for p in prompts]
        self._check_lengths([text for text, _ in read_])
        asked = [i for i, (_, refused) in enumerate(read_) if refused is None]
        generated = dict(zip(asked, self.generate_read([read_[i][0] for i in asked]) if asked else []))
        return [generated[i] if refused is None else refusal_answer(refused) for i, (_, refused) in enumerate(read_)]

    def caption(self, request: str) -> str:
        """Return the canonical caption for a free request, or raise WriterError saying what the world cannot do.   [nb 09]"""
        request = check_text(request, "request")
        text, refused = self.model_input(normalise(request))
        self._check_lengths([text])
        if refused is not None:
            raise refused
        if not any(w in shapes.COLOURS or w in shapes.SHAPES or w == "thing" for w in text.replace(",", " ").split()):
            # nothing the reader left names an object ("a navy squiggle" once read as a bare place): never guessed
            raise refusal("slot", f"{request!r} names no object the shapes world can draw; name a colour "
                                  f"(red, green, blue, yellow) and a shape (circle, square, triangle).")
        return resolve_request(self.generate_read([text])[0], request)

    def target_caption(self, source_caption: str, instruction: str) -> str:
        """Return the target caption of an instruction about the scene of source_caption, or raise WriterError."""
        shapes.parse_caption(check_text(source_caption, "source_caption"))
        instruction = check_text(instruction, "instruction")
        text, refused = self.model_input(edit_prompt(source_caption, normalise(instruction)))
        self._check_lengths([text])
        if refused is not None:
            raise refused
        target = resolve_edit(self.generate_read([text])[0], source_caption, instruction)
        if target == source_caption:
            error = WriterError(f"the instruction {instruction!r} changes nothing in {source_caption!r}.")
            error.kind = "no_change"
            raise error
        return target


def save_writer(writer: PromptWriter, folder, **manifest) -> dict:
    """Save the model and its tokenizer in one folder (safetensors, tokenizer.json) with a manifest; return it."""
    if not isinstance(writer, PromptWriter):
        raise CourseInputError(f"writer must be a language.PromptWriter, got {type(writer).__name__}.")
    folder = checkpoints.checkpoint_dir(folder)
    result = checkpoints.save_pretrained(writer.model, folder, **manifest)
    writer.tokenizer.save_pretrained(folder)
    return checkpoints.write_manifest(folder, class_path=result["class"], **{k: result.get(k) for k in (
        "name", "command", "train_config", "recipe", "data_seed", "steps", "wall_time_s", "metrics", "num_parameters")})


def load_writer(name_or_path: str | Path = NAME, device=None) -> PromptWriter:
    """Load a writer folder (hashes checked when it has a manifest) with AutoModelForCausalLM and AutoTokenizer.   [nb 09]

    The same two calls load any causal LM folder or hub id (load_instruction_model); a shipped
    checkpoint is verified first.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = check_device(device) if device is not None else torch.device("cpu")
    folder = checkpoints.checkpoint_dir(name_or_path)
    checkpoints.verify(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return PromptWriter(model.to(device), tokenizer)
