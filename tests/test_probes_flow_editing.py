"""Bad and unusual inputs for the flow editing methods (nb 10): each a CourseInputError whose message names what was
wrong, or acceptance with a correct result. Issue 23's probes: a UNet system given to a flow method and the reverse,
a shift or step count the scheduler cannot take, a mask that covers everything or nothing, a prompt longer than the
transformer's text length, identical captions; and NaN images, int seeds and numpy scalars."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import editing
from course_lib.validation import CourseInputError
from test_editing import parts  # noqa: F401  (the tiny random UNet system)
from test_flow_editing import FAST, case, flow_system, make_flow_system, towers  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

LONG = "a red circle in the top left and " * 6 + "a blue square"  # 40+ tokens: past the tokenizers' 32
TWO = editing.FlowInversionSettings("euler", 2)


def args(system, case, source=None, target=None, image=None):
    return (system, case.source_image if image is None else image, case.source_caption if source is None else source,
            case.target_caption if target is None else target)


# ----------------------------------------------------------------------------------------------
# The wrong family
# ----------------------------------------------------------------------------------------------

def test_a_unet_system_is_refused_by_every_flow_entry(parts, case):  # noqa: F811
    z = torch.zeros(1, 4, 8, 8)
    calls = [lambda name=name: editing.METHODS[name](*args(parts, case)) for name in editing.FLOW_METHODS]
    calls += [lambda: editing.flow_invert(parts, z, "a red circle"), lambda: editing.flow_sample(parts, z, "a"),
              lambda: editing.flow_reconstruction(parts, case.source_image, "a", [TWO]),
              lambda: editing.flow_edit_mask(*args(parts, case))]
    for call in calls:
        with pytest.raises(CourseInputError, match="system is a latent.UNetSystem.*need a latent.FlowSystem.*sdedit"):
            call()
    with pytest.raises(CourseInputError, match="system must be a latent.FlowSystem"):
        editing.flowedit(*args("a pipeline", case))


def test_a_flow_system_is_refused_by_every_unet_entry(flow_system, case):  # noqa: F811
    z = torch.zeros(1, 4, 8, 8)
    calls = [lambda name=name: editing.METHODS[name](*args(flow_system, case)) for name in editing.UNET_METHODS]
    calls += [lambda: editing.invert(flow_system, z, "a red circle"), lambda: editing.embed(flow_system, ["a"]),
              lambda: editing.edit_mask(*args(flow_system, case)),
              lambda: editing.reconstruction(flow_system, case.source_image, "a", [editing.InversionSettings()])]
    for call in calls:
        with pytest.raises(CourseInputError, match="parts is a latent.FlowSystem.*need a latent.UNetSystem.*kv_edit"):
            call()


# ----------------------------------------------------------------------------------------------
# The grid: shift and step count
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [0, -1.0, float("nan"), float("inf"), "3", True])
def test_a_shift_the_scheduler_cannot_take_is_refused(shift):
    for build in (lambda: editing.FlowInversionSettings(shift=shift), lambda: editing.FlowEditSettings(shift=shift),
                  lambda: editing.RFInversionSettings(shift=shift)):
        with pytest.raises(CourseInputError, match="shift"):
            build()


def test_a_numpy_shift_moves_the_grid_and_the_systems_own_is_its_schedule(flow_system):  # noqa: F811
    assert torch.equal(editing.flow_sigmas(flow_system, 6, 3.0), flow_system.schedule(6)[1])
    flat = editing.flow_sigmas(flow_system, 6, editing.FlowInversionSettings(shift=np.float32(1.0)).shift)
    assert flat[0] == 1 and flat[-1] == 0 and (flat[1:-1] < flow_system.schedule(6)[1][1:-1]).all()


@pytest.mark.parametrize("steps", [0, -2, 2.5, True, "4", float("nan")])
def test_a_step_count_the_scheduler_cannot_take_is_refused(steps):
    for build in (lambda: editing.FlowInversionSettings(num_steps=steps), lambda: editing.FlowEditSettings(num_steps=steps),
                  lambda: editing.RFInversionSettings(num_steps=steps)):
        with pytest.raises(CourseInputError, match="num_steps"):
            build()


def test_more_steps_than_the_scheduler_has_levels_and_dynamic_shifting_are_refused(flow_system, towers, case):  # noqa: F811
    with pytest.raises(CourseInputError, match="num_steps must be an int >= 1 and <= 1000"):
        editing.flow_inversion_edit(*args(flow_system, case), inversion=editing.FlowInversionSettings(num_steps=1001))
    with pytest.raises(CourseInputError, match="num_steps must be an int >= 1 and <= 1000"):
        editing.flowedit(*args(flow_system, case), settings=editing.FlowEditSettings(num_steps=1001))
    dynamic = make_flow_system(towers, use_dynamic_shifting=True)
    with pytest.raises(CourseInputError, match="dynamic shifting"):
        editing.flowedit(*args(dynamic, case))
    stochastic = make_flow_system(towers, stochastic_sampling=True)
    with pytest.raises(CourseInputError, match="stochastic_sampling"):
        editing.rf_inversion(*args(stochastic, case))
    out = editing.flow_inversion_edit(*args(flow_system, case), inversion=editing.FlowInversionSettings(
        np.str_("euler"), np.int64(2), np.float32(3.0), np.float64(1.0)))
    assert out.image.shape == case.source_image.shape


@pytest.mark.parametrize("settings, name", [
    (dict(n_max=51), "n_max"), (dict(n_max=0), "n_max"), (dict(n_min=33), "n_min"), (dict(n_min=-1), "n_min"),
    (dict(n_avg=0), "n_avg"), (dict(source_guidance=0.5), "source_guidance"),
    (dict(target_guidance=float("nan")), "target_guidance")])
def test_flowedit_windows_and_scales_out_of_range_are_refused(settings, name):
    with pytest.raises(CourseInputError, match=name):
        editing.FlowEditSettings(**settings)


@pytest.mark.parametrize("settings, name", [
    (dict(gamma=1.5), "gamma"), (dict(eta=-0.1), "eta"), (dict(eta_window=(0.0, 0.05)), "eta_window .* selects no step"),
    (dict(eta_window=(0.5, 0.2)), "eta_window"), (dict(guidance_scale=0.0), "guidance_scale"),
    (dict(inversion_prompt="target"), "inversion_prompt")])
def test_rf_inversion_settings_out_of_range_are_refused(settings, name):
    with pytest.raises(CourseInputError, match=name):
        editing.RFInversionSettings(**settings)
    assert editing.RFInversionSettings(eta=0.0, eta_window=(0.0, 0.05)).eta == 0  # no pull: any window


def test_solvers_windows_and_settings_of_another_kind_are_refused(flow_system, case):  # noqa: F811
    with pytest.raises(CourseInputError, match="solver='heun' is not known"):
        editing.FlowInversionSettings("heun")
    with pytest.raises(CourseInputError, match="self_window .* selects no step of the 4"):
        editing.flow_prompt_to_prompt(*args(flow_system, case), inversion=editing.FlowInversionSettings("euler", 4))
    with pytest.raises(CourseInputError, match="inversion must be an editing.FlowInversionSettings"):
        editing.flow_inversion_edit(*args(flow_system, case), inversion=editing.InversionSettings())
    with pytest.raises(CourseInputError, match="settings must be an editing.FlowEditSettings"):
        editing.flowedit(*args(flow_system, case), settings=editing.RFInversionSettings())
    with pytest.raises(CourseInputError, match="takes no option 'strength'"):
        editing.METHODS["flowedit"](*args(flow_system, case), strength=0.5)
    x = torch.zeros(2, 2)
    with pytest.raises(CourseInputError, match="strictly increasing"):
        editing.solve_ode(lambda x, s, i: x, x, [0.0, 0.5, 0.3])
    with pytest.raises(CourseInputError, match="velocity must be a callable"):
        editing.solve_ode("v", x, [0.0, 1.0])
    with pytest.raises(CourseInputError, match="sigmas must be a 1-D grid"):
        editing.solve_ode(lambda x, s, i: x, x, [0.0, 2.0])


# ----------------------------------------------------------------------------------------------
# Masks, prompts, images, seeds
# ----------------------------------------------------------------------------------------------

def test_a_mask_that_covers_nothing_or_everything_is_refused(flow_system, case):  # noqa: F811
    with pytest.raises(CourseInputError, match="covers no pixel of image.*nothing could change"):
        editing.kv_edit(*args(flow_system, case), mask=torch.zeros(32, 32, dtype=torch.bool), inversion=TWO)
    with pytest.raises(CourseInputError, match="covers every pixel of image.*nothing would be locked"):
        editing.kv_edit(*args(flow_system, case), mask=torch.ones(32, 32, dtype=torch.bool), inversion=TWO)
    with pytest.raises(CourseInputError, match="mask must have the image's size 32x32"):
        editing.kv_edit(*args(flow_system, case), mask=torch.ones(8, 8, dtype=torch.bool), inversion=TWO)


def test_prompts_longer_than_the_text_length_are_refused(flow_system, case):  # noqa: F811
    assert len(flow_system.tokenizer(LONG).input_ids) > 32 == flow_system.tokenizer.model_max_length
    for name in editing.FLOW_METHODS:
        with pytest.raises(CourseInputError, match=r"target_prompt .* tokens long .* at most 32"):
            editing.METHODS[name](*args(flow_system, case, target=LONG))
        with pytest.raises(CourseInputError, match=r"source_prompt .* tokens long"):
            editing.METHODS[name](*args(flow_system, case, source=LONG))
    with pytest.raises(CourseInputError, match="prompt .* tokens long"):
        editing.flow_invert(flow_system, torch.zeros(1, 4, 8, 8), LONG)


def test_identical_captions_are_refused_by_every_flow_method(flow_system, case):  # noqa: F811
    for name in editing.FLOW_METHODS:
        with pytest.raises(CourseInputError, match="nothing to edit"):
            editing.METHODS[name](*args(flow_system, case, target=case.source_caption))
    with pytest.raises(CourseInputError, match="nothing to edit"):
        editing.flow_edit_mask(*args(flow_system, case, target=case.source_caption))


def test_nan_images_and_latents_are_refused(flow_system, case):  # noqa: F811
    image = case.source_image.clone()
    image[0, 3, 4] = float("nan")
    for name in editing.FLOW_METHODS:
        with pytest.raises(CourseInputError, match="1 NaN and 0 infinite"):
            editing.METHODS[name](*args(flow_system, case, image=image))
    z = torch.zeros(1, 4, 8, 8)
    z[0, 0, 0, 0] = float("nan")
    for call in (lambda: editing.flow_invert(flow_system, z, "a red circle"),
                 lambda: editing.flow_sample(flow_system, z, "a red circle"),
                 lambda: editing.flow_reconstruction(flow_system, image, "a red circle", [TWO]),
                 lambda: editing.flow_edit_mask(*args(flow_system, case, image=image))):
        with pytest.raises(CourseInputError, match="NaN"):
            call()
    with pytest.raises(CourseInputError, match=r"latents must be \(B, 4, h, w\)"):
        editing.flow_invert(flow_system, torch.zeros(1, 3, 8, 8), "a red circle")


def test_an_int_seed_is_a_generator_for_every_flow_method(flow_system, case):  # noqa: F811
    for name in editing.FLOW_METHODS:
        a = editing.METHODS[name](*args(flow_system, case), generator=5, **FAST[name])
        b = editing.METHODS[name](*args(flow_system, case), generator=torch.Generator().manual_seed(5), **FAST[name])
        assert torch.equal(a, b), name
    mask = editing.flow_edit_mask(*args(flow_system, case), num_draws=1, generator=np.int64(5))
    assert torch.equal(mask, editing.flow_edit_mask(*args(flow_system, case), num_draws=1,
                                                    generator=torch.Generator().manual_seed(5)))
    with pytest.raises(CourseInputError, match="generator"):
        editing.flowedit(*args(flow_system, case), generator=1.5)


def test_fractional_and_numpy_options_through_the_registry(flow_system, case):  # noqa: F811
    out = editing.METHODS["kv_edit"](*args(flow_system, case), generator=0, num_steps=np.int64(2),
                                     mask_draws=np.int64(1), mask_strength=np.float32(0.5), guidance_scale=np.float64(2.0))
    assert out.shape == case.source_image.shape and math.isfinite(float(out.sum()))
    assert editing.METHODS["kv_edit"].defaults["inversion"].solver == "fireflow"
