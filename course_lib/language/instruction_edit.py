"""Editing from an instruction: the writer writes the target caption, an editing method draws it.   [nb 09]"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib import noise, shapes
from course_lib.language.writer import PromptWriter
from course_lib.validation import CourseInputError

EDIT_METHODS = ("mask_locking", "prompt_to_prompt", "inversion", "sdedit", "instruct_pix2pix")
DEFAULT_EDIT_METHOD = "mask_locking"  # the ShapesEdit table's best automatic row with two captions (nb 08)


@dataclass
class InstructionEdit:
    """What an instruction became: the edited image, the target caption the writer wrote, the canonical instruction."""

    image: torch.Tensor
    target_caption: str
    instruction: str


def edit_from_instruction(writer: PromptWriter, parts, image: torch.Tensor, source_caption: str, instruction: str, *,
                          method: str = DEFAULT_EDIT_METHOD, generator: torch.Generator | int | None = None,
                          **options) -> InstructionEdit:
    """Edit a locked image from a plain instruction: the writer writes the target caption, an editing method draws it.   [nb 09]

    method: an editing.METHODS name (with the text-to-image parts) or "instruct_pix2pix" (with
    instruct_pix2pix.load_parts(); it receives the canonical instruction of the one edit). A refusal
    (WriterError) or an instruction that is not one edit raises before anything is generated.
    generator: a torch.Generator, an int seed or None.
    """
    # editing and instruct_pix2pix load diffusers: imported on the first edit, not with the language package
    from course_lib import editing, instruct_pix2pix

    if method not in EDIT_METHODS:
        raise CourseInputError(f"method must be one of {EDIT_METHODS}, got {method!r}.")
    if not isinstance(writer, PromptWriter):
        raise CourseInputError(f"writer must be a language.PromptWriter (language.load_writer()), got {type(writer).__name__}.")
    generator = noise.as_generator(generator)
    target = writer.target_caption(source_caption, instruction)
    canonical = shapes.canonical_instruction(source_caption, target) if method == "instruct_pix2pix" else \
        _instruction_or_none(source_caption, target)
    if method == "instruct_pix2pix":
        edited = instruct_pix2pix.edit(parts, image, canonical, generator=generator, **options)
    else:
        edited = editing.METHODS[method](parts, image, source_caption, target, generator=generator, **options)
    return InstructionEdit(edited, target, canonical or "")


def _instruction_or_none(source_caption: str, target_caption: str) -> str | None:
    try:
        return shapes.canonical_instruction(source_caption, target_caption)
    except CourseInputError:
        return None  # two edits at once: caption-based methods take them, there is no single canonical instruction
