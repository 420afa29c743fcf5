"""Locked-image editing: SDEdit, inversions that survive guidance, prompt-to-prompt with local blending, and mask locking.   [notebooks 07-08]

Given an image x, its caption (the source prompt) and a target prompt that differs in a few words,
change what the words change and keep everything else. The pieces, each a step closer to a lock,
and the module of the package that holds each:

1. SDEdit (Meng et al. 2022, "img2img"; img2img.py): encode x to z0, noise it to a strength s in one
   jump, z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps, and denoise under the target prompt with CFG.
   Small s keeps the image and ignores the prompt; large s follows the prompt and forgets the image.
   `sdedit` equals diffusers' StableDiffusionImg2ImgPipeline step for step (tests/test_editing.py).
2. Inversions (inversions.py: `invert`, INVERSIONS, InversionSettings): the source latent's path to
   noise, and what the sampler needs to come back along it under classifier-free guidance
   ("ddim", "negative_prompt", "null_text", "direct", "edit_friendly"). `reconstruction` (loop.py)
   measures each: PSNR of the round trip at the editing guidance scale, UNet calls, seconds.
3. The editing loop (loop.py: `edit_latents`): the target prompt sampled from an inversion, alone
   or beside the source branch (one UNet batch, CFG_LAYOUT), with an attention controller
   (prompt-to-prompt) and a blend (a latent mask, or local blending) applied after every step.
4. Prompt-to-prompt (Hertz et al. 2023; controllers.py, methods.py): source and target generated
   side by side from the same start; inside an edit window of the steps the target's
   cross-attention maps are replaced by the source's (word swap, refinement) or one word's maps
   are scaled (re-weighting). Local blending (`LocalBlend`, masks.py; the paper's sec. 3.3): after
   every step the target keeps its own latents only where the edited words are attended.
5. Masks and mask locking (masks.py, methods.py): where to edit, from where the two prompts'
   noise predictions disagree (DiffEdit, Couairon et al. 2023, `difference_map`) or from the edited
   words' cross-attention (`attention_map`); `mask_locking` samples the target with latent blending
   (Avrahami et al. 2023): outside the mask the final latent IS the source latent.

6. Editing with flows (SD3's family, latent.FlowSystem, nb 10): inversion of the flow ODE with
   Euler, RF-Solver or FireFlow (flow_steps.py, flow_inversion.py: `flow_invert`, `flow_sample`,
   `flow_reconstruction`, `flow_inversion_edit`); RF-Inversion's controlled ODEs and FlowEdit's
   inversion-free velocity difference (flow_edits.py); attention control in MMDiT joint attention
   (joint_attention.py) for prompt-to-prompt and KV-Edit, and the flow model's automatic masks
   (flow_attention.py: `flow_prompt_to_prompt`, `kv_edit`, `flow_edit_mask`).

The rest: checks.py (the checks at every door), tokens.py (token alignment of two prompts),
primitives.py (the latent system's steps editing composes: timesteps, encoders, decoder, UNet,
DDIM step, and the scheduler's noise table built once), registry.py (METHODS, one signature).

Settings come in frozen dataclasses checked once when built (InversionSettings,
PromptToPromptSettings, MaskLockingSettings, MaskSettings, FlowInversionSettings, RFInversionSettings,
FlowEditSettings, FlowP2PSettings); prompt_to_prompt, mask_locking and every flow method return an
EditOutput (image, mask). Every method has one signature in the registry (METHODS):

    METHODS[name](parts, image, source_prompt, target_prompt, *, generator=None, **options)
        parts: a latent.UNetSystem for sdedit, inversion, prompt_to_prompt, mask_locking;
        a latent.FlowSystem for flow_inversion, rf_inversion, flowedit, flow_p2p, kv_edit
        image (3, H, W) or (B, 3, H, W) in [-1, 1] -> edited image(s), same shape, in [-1, 1]

Each public function checks its inputs once, at its door, with a CourseInputError that says what
to change (NaN pixels or latents, prompts longer than the tokenizer reads, an edit window of no
step, a mask that covers nothing or everything); generator= takes a torch.Generator or an int seed.
The benchmark's table is data/shapesedit_results.json (benchmarks/bench_shapesedit.py).
"""

from course_lib.editing.checks import FLOW_METHODS, UNET_METHODS, check_strength, check_window
from course_lib.editing.controllers import (CFG_LAYOUT, AttentionController, AttentionReplace, AttentionReweight,
                                            layout_rows, window_steps)
from course_lib.editing.inversions import (INVERSIONS, Inversion, InversionSettings, check_inversion_method,
                                           ddim_inverse_step, ddim_invert, invert)
from course_lib.editing.loop import Blend, edit_latents, p2p_latents, reconstruction, start_latents
from course_lib.editing.masks import (MASK_SOURCES, MASK_THRESHOLDS, LocalBlend, MaskSettings, attention_map,
                                      check_mask, diffedit_mask, difference_map, edit_mask, fill_holes, grow,
                                      image_mask, latent_mask, mask_from_map, normalise_map, peak_region)
from course_lib.editing.methods import (EditOutput, MaskLockingSettings, PromptToPromptSettings, inversion_edit,
                                        mask_locking, prompt_to_prompt)
from course_lib.editing.primitives import (SPACING, STEPS_OFFSET, decode_latents, edit_timesteps, embed,
                                           encode_image, start_timestep)
from course_lib.editing.registry import METHODS, EditMethod, register, run_case
from course_lib.editing.img2img import sdedit
from course_lib.editing.flow_steps import (SOLVERS, Branch, GuidedVelocity, Trajectory, check_flow_system, flow_sigmas,
                                           solve_ode, solver_nfe)
from course_lib.editing.flow_inversion import (FlowInversion, FlowInversionSettings, flow_invert, flow_inversion_edit,
                                               flow_reconstruction, flow_sample)
from course_lib.editing.flow_edits import (FlowEditSettings, RFInversionSettings, controlled_step,
                                           controlled_velocity, flowedit, flowedit_latents, rf_inversion)
from course_lib.editing.joint_attention import (JointAttentionControl, JointAttentionReplace, JointWordAttention,
                                                KVCache, cell_mask, token_mask, whole_tokens)
from course_lib.editing.flow_attention import (KV_EDIT_SETTINGS, FlowP2PSettings, flow_edit_mask, flow_prompt_to_prompt, kv_edit)
from course_lib.editing.tokens import changed_positions, check_edit_prompts, token_mapper, token_positions

__all__ = [
    "FLOW_METHODS", "KV_EDIT_SETTINGS", "UNET_METHODS", "SOLVERS", "Branch", "FlowEditSettings", "FlowInversion", "FlowInversionSettings", "FlowP2PSettings",
    "GuidedVelocity", "JointAttentionControl", "JointAttentionReplace", "JointWordAttention", "KVCache",
    "RFInversionSettings", "Trajectory", "cell_mask", "check_flow_system", "controlled_step", "controlled_velocity",
    "flow_edit_mask", "flow_invert", "flow_inversion_edit", "flow_prompt_to_prompt", "flow_reconstruction",
    "flow_sample", "flow_sigmas", "flowedit", "flowedit_latents", "kv_edit", "rf_inversion", "solve_ode", "solver_nfe",
    "token_mask", "whole_tokens",
    "CFG_LAYOUT", "INVERSIONS", "MASK_SOURCES", "MASK_THRESHOLDS", "METHODS", "SPACING", "STEPS_OFFSET",
    "AttentionController", "AttentionReplace", "AttentionReweight", "Blend", "EditMethod", "EditOutput", "Inversion",
    "InversionSettings", "LocalBlend", "MaskLockingSettings", "MaskSettings", "PromptToPromptSettings",
    "attention_map", "changed_positions", "check_edit_prompts", "check_inversion_method", "check_mask",
    "check_strength", "check_window", "ddim_inverse_step", "ddim_invert", "decode_latents", "diffedit_mask",
    "difference_map", "edit_latents", "edit_mask", "edit_timesteps", "embed", "encode_image", "fill_holes", "grow",
    "image_mask", "inversion_edit", "invert", "latent_mask", "layout_rows", "mask_from_map", "mask_locking",
    "normalise_map", "p2p_latents", "peak_region", "prompt_to_prompt", "reconstruction", "register", "run_case",
    "sdedit", "start_latents", "start_timestep", "token_mapper", "token_positions", "window_steps",
]
