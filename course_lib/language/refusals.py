"""Refusals and resolving: the writer's answer read, refused with a clear message, or executed by the world.   [nb 09]

The writer answers in the world's own small languages: a caption (objects in the order the request
names them; resolve_request sorts them into reading order), the canonical instruction of
shapes.instruction, which shapes.read_instruction and apply_edit execute (resolve_edit), or one of
REFUSALS, which check_refusal turns into a WriterError that says what the world cannot do.
"""

from __future__ import annotations

import re

from course_lib import shapes
from course_lib.language.words import EDIT_JOINER, REFUSALS, SCENE, check_text
from course_lib.validation import CourseInputError, check_choice

WORLD = (f"the shapes world has the colours {', '.join(shapes.COLOURS)}, the shapes {', '.join(shapes.SHAPES)} "
         f"and the backgrounds {', '.join(shapes.BACKGROUNDS)}")
RELATION = re.compile(r"^a (\w+) (\w+) (above|to the left of) a (\w+) (\w+)$")
ANSWER_KINDS = ("request", "refusal", "instruction")


class WriterError(CourseInputError):
    """The writer refused: the request or instruction asks what the shapes world cannot do."""


def _check_answer(answer) -> str:
    if not isinstance(answer, str):
        raise CourseInputError(f"answer must be the writer's answer (a string), got {type(answer).__name__}.")
    return answer


def _scene_words(caption: str) -> str:
    return shapes.objects_phrase(shapes.caption_objects(caption)) or "no objects"


def check_refusal(answer: str, text: str, source_caption: str | None = None) -> None:
    """Raise WriterError with a clear message when the writer's answer is a refusal (REFUSALS); else return."""
    _check_answer(answer)
    scene = f"; the scene holds {_scene_words(source_caption)}" if source_caption else ""
    if answer.startswith("unsupported: "):
        raise WriterError(f"{text!r}: the shapes world has no {answer.split(': ', 1)[1]!r} ({WORLD}).")
    if answer == "too many objects":
        raise WriterError(f"{text!r}: a scene holds at most {shapes.MAX_OBJECTS} objects.")
    if answer.startswith("not in the scene: "):
        raise WriterError(f"{text!r}: there is no {answer.split(': ', 1)[1]} in the scene{scene}.")
    if answer.startswith("ambiguous: "):
        raise WriterError(f"{text!r}: which {answer.split(': ', 1)[1]}? Name it by colour or position{scene}.")
    if answer == "contradiction":
        raise WriterError(f"{text!r}: the instructions contradict each other; give one of them.")


def resolve_request(answer: str, request: str) -> str:
    """Return the canonical caption of the writer's answer to a request: its objects in reading order.   [nb 09]

    The writer names the objects in the request's order; shapes.caption sorts them (the order the
    image model was trained on). A relation answer ("a red circle above a blue square") stays as it is.
    """
    check_refusal(answer, request)
    relation = RELATION.match(answer)
    try:
        if relation:
            c1, s1, _, c2, s2 = relation.groups()
            for c, sh in ((c1, s1), (c2, s2)):
                shapes.ShapeObject(sh, c, 1, 1)  # known words, or a clear error
            return answer
        d = shapes.parse_caption(answer)
        scene = shapes.Scene.from_dict({"background": d["background"] or "black", "objects": d["objects"]})
        return shapes.caption(scene, "full" if d["background"] else "objects")
    except CourseInputError as error:
        raise WriterError(f"{request!r}: the writer's answer {answer!r} is not a scene of the shapes world ({error}); "
                          f"rephrase the request.") from None


def resolve_edit(answer: str, source_caption: str, instruction: str) -> str:
    """Return the target caption: the writer's instruction answer(s) read against the source scene and applied.   [nb 09]

    The writer answers in the world's instruction language with the objects named as the
    instruction named them ("make the circle yellow"; two edits joined by EDIT_JOINER); the world
    finds each referent in the scene (referents.read_parts: not in the scene, ambiguous, no change
    and contradictions are refused with .kind) and applies the edits, so the target caption differs
    from the source exactly where the instruction says, and nowhere else. (referents is imported
    here, not above: it builds on this module's WriterError.)
    """
    check_text(source_caption, "source_caption")
    scene = shapes.scene_from_caption(source_caption)
    check_refusal(answer, instruction, source_caption)
    from course_lib.language.referents import apply_edits, read_parts

    try:
        target = apply_edits(scene, read_parts(scene, answer, EDIT_JOINER))
    except WriterError as error:
        if getattr(error, "kind", "invalid") == "invalid":
            raise WriterError(f"{instruction!r}: the writer's answer {answer!r} is not an edit the world reads; "
                              f"rephrase the instruction.") from None
        error.args = (f"{instruction!r}: {error}",)
        raise
    except CourseInputError as error:
        raise WriterError(f"{instruction!r}: the writer's answer {answer!r} is not an edit of this scene ({error}).") from None
    return shapes.caption(target, "full")


def resolved(kind: str, prompt: str, answer: str) -> str:
    """Return what an answer comes to: the canonical caption, the target caption, the refusal ("refused: <kind>" when
    the world refuses the edit), or "invalid".

    kind: one of ANSWER_KINDS, as examples() labels the prompt; a prompt with SCENE is read as an edit.
    """
    check_choice(kind, ANSWER_KINDS, "kind")
    check_text(prompt, "prompt")
    if _check_answer(answer).startswith(REFUSALS):
        return answer
    try:
        if SCENE in prompt:
            source, _, instruction = prompt.partition(SCENE)
            return resolve_edit(answer, source, instruction)
        return resolve_request(answer, prompt)
    except WriterError as error:  # the world's refusals (not in the scene, ambiguous, ...) keep their kind
        kind = getattr(error, "kind", "invalid")
        return "invalid" if kind == "invalid" else f"refused: {kind}"
