"""The registry: every recipe of every family, by name, built in one place.   [notebook 03]

Each family module ends with RECIPES = (one recipe, ...); FAMILIES lists the modules in the order
the course meets them (the order of `python -m course_lib.recipes --list`).
"""

from __future__ import annotations

from course_lib.recipes import (autoencoder, contrastive, ddpm, flow_transformer, instruction_edits, prompt_writer,
                                text_to_image)
from course_lib.recipes.base import Recipe
from course_lib.validation import CourseInputError

FAMILIES = (ddpm, autoencoder, contrastive, text_to_image, instruction_edits, prompt_writer, flow_transformer)


def _registry(families) -> dict[str, Recipe]:
    out: dict[str, Recipe] = {}
    for family in families:
        for recipe in family.RECIPES:
            if recipe.name in out:
                raise RuntimeError(f"two recipes are named {recipe.name!r} ({family.__name__} and another family).")
            out[recipe.name] = recipe
    return out


RECIPES: dict[str, Recipe] = _registry(FAMILIES)


def get(name: str) -> Recipe:
    """Return a recipe by name, or raise listing the known ones."""
    if not isinstance(name, str) or name not in RECIPES:
        raise CourseInputError(f"no recipe {name!r}; known recipes: {', '.join(RECIPES)}.")
    return RECIPES[name]
