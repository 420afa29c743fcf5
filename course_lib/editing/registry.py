"""The registry of editing methods: one signature for every method, so a benchmark can call them alike.   [nb 08]

    METHODS[name](parts, image, source_prompt, target_prompt, *, generator=None, **options)
        image (3, H, W) or (B, 3, H, W) in [-1, 1] -> edited image(s), same shape, in [-1, 1]

parts is the latent system the method's family needs: a latent.UNetSystem for the UNet rows (sdedit,
inversion, prompt_to_prompt, mask_locking), a latent.FlowSystem for the flow rows (flow_inversion,
rf_inversion, flowedit, flow_p2p, kv_edit); each refuses the other family with a CourseInputError.

options are flat and JSON-able (a benchmark row records them): each names a field of one of the
method's settings (num_steps=10, inversion="direct", local_blend=False, mask_draws=2, ...) or one
of its plain keywords (sdedit's strength, mask_locking's mask). The registry turns them into the
settings objects (checked there, once) and gives back the image alone; call the method itself for
its EditOutput. A later family of methods joins with register(name, EditMethod(...)).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from course_lib import latent
from course_lib.editing.inversions import InversionSettings
from course_lib.editing.methods import (P2P_INVERSION, EditOutput, MaskLockingSettings, PromptToPromptSettings,
                                        inversion_edit, mask_locking, prompt_to_prompt)
from course_lib.editing.img2img import sdedit
from course_lib.editing.flow_attention import KV_EDIT_SETTINGS, FlowP2PSettings, flow_prompt_to_prompt, kv_edit
from course_lib.editing.flow_edits import FlowEditSettings, RFInversionSettings, flowedit, rf_inversion
from course_lib.editing.flow_inversion import FlowInversionSettings, flow_inversion_edit
from course_lib.validation import CourseInputError


@dataclass(frozen=True)
class EditMethod:
    """A registered editing method: run, the settings objects it takes by keyword, and its plain keywords.   [nb 08]

    run(parts, image, source_prompt, target_prompt, *, generator, **keywords) -> EditOutput or image.
    settings: (keyword of run, its default settings: a frozen dataclass) pairs; a flat option names a
    field of one of them, or an alias the dataclass lists in OPTION_NAMES (inversion= for
    InversionSettings.method); a settings object itself may be passed under its keyword.
    keywords: run's other keywords, passed through as they are.
    """

    run: Callable[..., EditOutput | torch.Tensor]
    settings: tuple[tuple[str, Any], ...] = ()
    keywords: tuple[str, ...] = ()

    @property
    def defaults(self) -> dict[str, Any]:
        """The default settings object of each settings keyword, e.g. defaults["inversion"].method."""
        return dict(self.settings)

    def option_names(self) -> dict[str, tuple[str, str | None]]:
        """Return {flat option: (keyword of run, field of its settings or None for a plain keyword)}."""
        names: dict[str, tuple[str, str | None]] = {k: (k, None) for k in self.keywords}
        for keyword, default in self.settings:
            aliases = {field: alias for alias, field in getattr(default, "OPTION_NAMES", {}).items()}
            for f in dataclasses.fields(default):
                if f.init:
                    names[aliases.get(f.name, f.name)] = (keyword, f.name)
        return names

    def arguments(self, options: dict) -> dict:
        """Return run's keyword arguments for flat options: the settings (default with the options' fields replaced)."""
        names = self.option_names()
        base = self.defaults
        fields: dict[str, dict] = {keyword: {} for keyword in base}
        plain = {}
        for name, value in options.items():
            if name in base and isinstance(value, type(base[name])):  # a whole settings object
                base[name] = value
            elif name in names:
                keyword, field_name = names[name]
                if field_name is None:
                    plain[keyword] = value
                else:
                    fields[keyword][field_name] = value
            else:
                raise CourseInputError(f"{getattr(self.run, '__name__', 'this method')} takes no option {name!r}; "
                                       f"its options: {', '.join(sorted(names))}.")
        return {**plain, **{k: dataclasses.replace(base[k], **fields[k]) if fields[k] else base[k] for k in base}}

    def __call__(self, parts: latent.LatentSystem, image: torch.Tensor, source_prompt, target_prompt, *,
                 generator: torch.Generator | int | None = None, **options) -> torch.Tensor:
        """Run the method with flat options; return the edited image(s), the input's shape, in [-1, 1]."""
        out = self.run(parts, image, source_prompt, target_prompt, generator=generator, **self.arguments(options))
        return out.image if isinstance(out, EditOutput) else out


METHODS: dict[str, EditMethod] = {
    "sdedit": EditMethod(sdedit, keywords=("strength", "guidance_scale", "num_steps", "negative_prompt", "sampler")),
    "inversion": EditMethod(inversion_edit, settings=(("inversion", InversionSettings()),)),
    "prompt_to_prompt": EditMethod(prompt_to_prompt, settings=(("inversion", P2P_INVERSION),
                                                               ("settings", PromptToPromptSettings()))),
    "mask_locking": EditMethod(mask_locking, settings=(("inversion", InversionSettings()),
                                                       ("settings", MaskLockingSettings())), keywords=("mask",)),
    # the flow family (latent.FlowSystem), nb 10
    "flow_inversion": EditMethod(flow_inversion_edit, settings=(("inversion", FlowInversionSettings()),)),
    "rf_inversion": EditMethod(rf_inversion, settings=(("settings", RFInversionSettings()),)),
    "flowedit": EditMethod(flowedit, settings=(("settings", FlowEditSettings()),)),
    "flow_p2p": EditMethod(flow_prompt_to_prompt, settings=(("inversion", FlowInversionSettings()),
                                                            ("settings", FlowP2PSettings()))),
    "kv_edit": EditMethod(kv_edit, settings=(("inversion", FlowInversionSettings()),
                                             ("settings", KV_EDIT_SETTINGS)), keywords=("mask",)),
}


def register(name: str, method: EditMethod) -> None:
    """Add an editing method to METHODS under a new name (a benchmark then runs it like the others)."""
    if not isinstance(name, str) or not name or name in METHODS:
        raise CourseInputError(f"name must be a new method name (METHODS has {sorted(METHODS)}), got {name!r}.")
    if not isinstance(method, EditMethod):
        raise CourseInputError(f"method must be an editing.EditMethod, got {type(method).__name__}.")
    METHODS[name] = method


def run_case(method: str | Callable[..., torch.Tensor], parts: latent.LatentSystem, case, *,
             generator: torch.Generator | int | None = None, **options) -> torch.Tensor:
    """Run one edit method on a shapes.EditResult-like case (source_image, source_caption, target_caption).   [nb 08]

    method: a METHODS name or a callable with the common signature. The case's ground-truth mask is
    NOT passed (give mask=case.mask in options for a user-mask run).
    """
    if isinstance(method, str):
        if method not in METHODS:
            raise CourseInputError(f"unknown edit method {method!r}; use one of {sorted(METHODS)}.")
        method = METHODS[method]
    elif not callable(method):
        raise CourseInputError(f"method must be a METHODS name or a callable, got {type(method).__name__}.")
    missing = [a for a in ("source_image", "source_caption", "target_caption") if not hasattr(case, a)]
    if missing:
        raise CourseInputError(f"case must have source_image, source_caption and target_caption (a shapesedit case); "
                               f"it lacks {missing}.")
    return method(parts, case.source_image, case.source_caption, case.target_caption, generator=generator, **options)
