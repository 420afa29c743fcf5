"""Bad and unusual inputs for every public function of course_lib.editing and course_lib.shapesedit: each either
a CourseInputError whose message names what was wrong, or acceptance with a correct result. Issue 22's probes
(empty edit windows, NaN re-weighting, masks that cover nothing or everything, prompts past the tokenizer's
length, NaN images and latents, int seeds, outputs in the wrong pixel range) are each a row here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import editing, shapes, shapesedit
from course_lib.validation import CourseInputError
from test_editing import parts  # noqa: F401  (the same tiny random UNet, shipped VAE and text tower)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def case():
    return shapes.edit_cases(1, seed=0, kinds=("colour",))[0]


@pytest.fixture(scope="module")
def z0(parts, case):
    return editing.encode_image(parts, case.source_image[None])


def _nan_image(case):
    image = case.source_image.clone()
    image[0, 3, 4] = float("nan")
    return image


LONG = "a red circle in the top left and " * 6 + "a blue square"  # 40+ tokens: past the tokenizer's 32
TWO = editing.InversionSettings(num_steps=2)
FIVE_P2P = editing.InversionSettings("edit_friendly", 5)


# ----------------------------------------------------------------------------------------------
# Issue 22's probes, one by one
# ----------------------------------------------------------------------------------------------

def test_an_empty_edit_window_is_refused_with_the_step_count_and_the_fix(parts, case):
    with pytest.raises(CourseInputError, match=r"num_steps=3 runs int\(3 x 0.2\) = 0 steps.*at least 5"):
        editing.prompt_to_prompt(parts, case.source_image, case.source_caption, case.target_caption,
                                 inversion=editing.InversionSettings(num_steps=3, strength=0.2))
    with pytest.raises(CourseInputError, match="0 steps"):  # through the registry's flat options too
        editing.METHODS["prompt_to_prompt"](parts, case.source_image, case.source_caption, case.target_caption,
                                            num_steps=3, strength=0.2)
    for method in ("inversion", "mask_locking", "sdedit"):
        with pytest.raises(CourseInputError, match="edit window is empty"):
            editing.METHODS[method](parts, case.source_image, case.source_caption, case.target_caption, num_steps=3,
                                    strength=0.2)
    with pytest.raises(CourseInputError, match="strength 0 redoes no step"):
        editing.InversionSettings(strength=0.0)
    with pytest.raises(CourseInputError, match="edit window is empty"):
        editing.ddim_invert(parts, torch.zeros(1, 4, 8, 8), "a red circle", num_steps=4, strength=0.1)


@pytest.mark.parametrize("window, name", [((0.0, 0.1), "cross_window"), ((0.5, 0.55), "cross_window"),
                                          ((0.0, 0.15), "self_window")])
def test_a_prompt_to_prompt_window_that_selects_no_step_is_refused(parts, case, window, name):
    settings = editing.PromptToPromptSettings(**{name: window})
    with pytest.raises(CourseInputError, match=f"{name} .* selects no step of the 5 .*zero width"):
        editing.prompt_to_prompt(parts, case.source_image, case.source_caption, case.target_caption, inversion=FIVE_P2P,
                                 settings=settings)


def test_a_zero_width_window_is_off_and_accepted(parts, case):
    out = editing.prompt_to_prompt(parts, case.source_image, case.source_caption, case.target_caption,
                                   inversion=editing.InversionSettings("ddim", 2),
                                   settings=editing.PromptToPromptSettings(self_window=(0.0, 0.0), local_blend=False))
    assert out.image.shape == case.source_image.shape and out.mask is None


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -1.0, 0.0, "big", True])
def test_reweight_scales_must_be_finite_and_positive(scale):
    with pytest.raises(CourseInputError, match=r"reweight\['blue'\]"):
        editing.PromptToPromptSettings(reweight={"blue": scale})


def test_reweight_takes_numpy_scales_and_must_be_a_dict():
    assert editing.PromptToPromptSettings(reweight={"red": np.float32(2.0)}).reweight == (("red", 2.0),)
    with pytest.raises(CourseInputError, match="reweight must be a dict"):
        editing.PromptToPromptSettings(reweight=["red", 2.0])


def test_a_mask_that_covers_nothing_or_everything_is_refused(parts, case):
    args = (parts, case.source_image, case.source_caption, case.target_caption)
    with pytest.raises(CourseInputError, match="covers no pixel of image.*nothing could change"):
        editing.mask_locking(*args, mask=torch.zeros(32, 32, dtype=torch.bool), inversion=TWO)
    with pytest.raises(CourseInputError, match="covers every pixel of image.*nothing would be locked"):
        editing.mask_locking(*args, mask=torch.ones(32, 32, dtype=torch.bool), inversion=TWO)
    almost = torch.ones(32, 32, dtype=torch.bool)
    almost[0, 0] = False  # one locked pixel: every latent cell may change, the pasted composite keeps that pixel
    out = editing.mask_locking(*args, mask=almost, inversion=TWO, settings=editing.MaskLockingSettings(composite=True))
    assert out.mask.all() and torch.equal(out.image[:, 0, 0], case.source_image[:, 0, 0])
    nan_mask = torch.full((32, 32), 0.5)
    nan_mask[0, 0] = float("nan")
    with pytest.raises(CourseInputError, match="finite values in \\[0, 1\\]"):
        editing.mask_locking(*args, mask=nan_mask, inversion=TWO)
    batch = torch.stack([case.source_image] * 2)
    masks = torch.stack([case.mask, torch.zeros_like(case.mask)])
    with pytest.raises(CourseInputError, match=r"image\(s\) \[1\]"):  # says which image of the batch
        editing.mask_locking(parts, batch, case.source_caption, case.target_caption, mask=masks, inversion=TWO)


def test_prompts_longer_than_the_tokenizer_reads_are_refused_with_the_count_and_the_limit(parts, case):
    assert len(parts.tokenizer(LONG).input_ids) > parts.tokenizer.model_max_length == 32
    tail_only = LONG.replace("a blue square", "a green square")  # differs only past token 32
    with pytest.raises(CourseInputError, match=r"source_prompt .* is \d+ tokens long .* at most 32"):
        editing.prompt_to_prompt(parts, case.source_image, LONG, tail_only, inversion=FIVE_P2P)
    for call in (lambda: editing.sdedit(parts, case.source_image, "", LONG, num_steps=2),
                 lambda: editing.mask_locking(parts, case.source_image, case.source_caption, LONG, inversion=TWO),
                 lambda: editing.inversion_edit(parts, case.source_image, LONG, case.target_caption, inversion=TWO),
                 lambda: editing.embed(parts, [LONG]),
                 lambda: editing.token_mapper(parts.tokenizer, LONG, tail_only, "refine"),
                 lambda: editing.changed_positions(parts.tokenizer, case.source_caption, LONG),
                 lambda: editing.token_positions(parts.tokenizer, LONG, "red")):
        with pytest.raises(CourseInputError, match="tokens long"):
            call()


def test_nan_in_images_or_latents_is_refused_at_every_entry(parts, case, z0):
    image, src, tgt = _nan_image(case), case.source_caption, case.target_caption
    for name in editing.UNET_METHODS:  # the flow rows: tests/test_probes_flow_editing.py
        with pytest.raises(CourseInputError, match="1 NaN and 0 infinite"):
            editing.METHODS[name](parts, image, src, tgt)
    for call in (lambda: editing.encode_image(parts, image[None]),
                 lambda: editing.edit_mask(parts, image, src, tgt),
                 lambda: editing.diffedit_mask(parts, image, src, tgt),
                 lambda: editing.reconstruction(parts, image, src, [TWO])):
        with pytest.raises(CourseInputError, match="NaN"):
            call()
    bad = z0.clone()
    bad[0, 1, 2, 3] = float("nan")
    for call in (lambda: editing.invert(parts, bad, src, TWO), lambda: editing.ddim_invert(parts, bad, src),
                 lambda: editing.decode_latents(parts, bad),
                 lambda: editing.difference_map(parts, bad, src, tgt),
                 lambda: editing.attention_map(parts, bad, src, tgt),
                 lambda: editing.mask_from_map(bad[:, 1:2], 0.3)):
        with pytest.raises(CourseInputError, match="latents|diff"):
            call()
    inv = editing.invert(parts, z0, src, TWO)
    broken = editing.Inversion("ddim", inv.latents[:-1] + [bad], inv.timesteps, inv.source_embeddings, inv.uncond, 4.0)
    with pytest.raises(CourseInputError, match="inversion.start\\(\\) holds 1 NaN"):
        editing.edit_latents(parts, broken, tgt)


def test_identical_prompts_are_still_refused(parts, case):
    for method in ("prompt_to_prompt", "mask_locking"):
        with pytest.raises(CourseInputError, match="nothing to edit"):
            editing.METHODS[method](parts, case.source_image, case.source_caption, case.source_caption, num_steps=2)


def test_an_int_seed_is_a_generator_everywhere(parts, case, z0):
    src, tgt, image = case.source_caption, case.target_caption, case.source_image
    same = [
        (lambda g: editing.sdedit(parts, image, src, tgt, num_steps=2, generator=g)),
        (lambda g: editing.encode_image(parts, image[None], generator=g, sample_mode="sample")),
        (lambda g: editing.invert(parts, z0, src, editing.InversionSettings("edit_friendly", 2), generator=g).latents[-1]),
        (lambda g: editing.inversion_edit(parts, image, src, tgt, inversion=editing.InversionSettings("edit_friendly", 2),
                                          generator=g)),
        (lambda g: editing.prompt_to_prompt(parts, image, src, tgt, inversion=FIVE_P2P, generator=g).image),
        (lambda g: editing.mask_locking(parts, image, src, tgt, inversion=TWO, generator=g,
                                        settings=editing.MaskLockingSettings(mask_draws=1, start="noise")).image),
        (lambda g: editing.difference_map(parts, z0, src, tgt, num_draws=1, generator=g)),
        (lambda g: editing.attention_map(parts, z0, src, tgt, num_draws=1, generator=g)),
        (lambda g: editing.edit_mask(parts, image, src, tgt, num_draws=1, generator=g)),
        (lambda g: editing.reconstruction(parts, image, src, [editing.InversionSettings("edit_friendly", 2)],
                                          generator=g)[0]["latent_rmse"]),
        (lambda g: editing.run_case("sdedit", parts, case, generator=g, num_steps=2)),
    ]
    for i, call in enumerate(same):
        a, b = call(7), call(torch.Generator().manual_seed(7))
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), i
    with pytest.raises(CourseInputError, match="generator must be a torch.Generator, an int seed or None"):
        editing.sdedit(parts, image, src, tgt, num_steps=2, generator="seven")
    with pytest.raises(CourseInputError, match="generator"):
        editing.invert(parts, z0, src, TWO, generator=1.5)


# ----------------------------------------------------------------------------------------------
# numpy scalars, settings objects and the registry's options
# ----------------------------------------------------------------------------------------------

def test_numpy_scalars_are_numbers(parts, case):
    plain = editing.sdedit(parts, case.source_image, "", case.target_caption, strength=0.5, guidance_scale=3.0,
                           num_steps=4, generator=0)
    numpy = editing.sdedit(parts, case.source_image, "", case.target_caption, strength=np.float32(0.5),
                           guidance_scale=np.float64(3.0), num_steps=np.int64(4), generator=np.int64(0))
    assert torch.equal(plain, numpy)
    settings = editing.InversionSettings("null_text", np.int64(4), np.float32(0.5), np.float64(4.0), np.int32(2),
                                         np.float32(1e-2))
    assert (settings.num_steps, settings.strength, settings.null_text_steps) == (4, 0.5, 2)
    assert type(settings.num_steps) is int and type(settings.strength) is float
    assert editing.edit_timesteps(np.int64(10), np.float32(0.5)).tolist() == editing.edit_timesteps(10, 0.5).tolist()
    assert editing.MaskLockingSettings(mask_draws=np.int64(2), mask_strength=np.float32(0.5)).mask_settings.num_draws == 2
    assert editing.PromptToPromptSettings(cross_window=(np.float32(0), np.float64(0.5))).cross_window == (0.0, 0.5)


@pytest.mark.parametrize("make, message", [
    (lambda: editing.InversionSettings("exact"), "inversion='exact' is not known"),
    (lambda: editing.InversionSettings(num_steps=0), "num_steps must be a positive int"),
    (lambda: editing.InversionSettings(num_steps=2.5), "num_steps"),
    (lambda: editing.InversionSettings(strength=1.5), "strength"),
    (lambda: editing.InversionSettings(strength=float("nan")), "strength"),
    (lambda: editing.InversionSettings(guidance_scale=float("nan")), "guidance_scale"),
    (lambda: editing.InversionSettings(null_text_lr=float("inf")), "null_text_lr"),
    (lambda: editing.InversionSettings(null_text_steps=True), "null_text_steps"),
    (lambda: editing.InversionSettings(sampler="euler"), "sampler must be 'ddim'"),
    (lambda: editing.PromptToPromptSettings(mode="exact"), "mode='exact' is not known"),
    (lambda: editing.PromptToPromptSettings(cross_window=0.8), "cross_window must be a pair"),
    (lambda: editing.PromptToPromptSettings(self_window=(0.0, float("nan"))), "self_window's end"),
    (lambda: editing.PromptToPromptSettings(local_blend="yes"), "local_blend must be True or False"),
    (lambda: editing.PromptToPromptSettings(blend_start=1.0), "blend_start"),
    (lambda: editing.PromptToPromptSettings(blend_grow=-1), "blend_grow"),
    (lambda: editing.PromptToPromptSettings(blend_normalise="l2"), "blend_normalise"),
    (lambda: editing.MaskLockingSettings(mask_source="oracle"), "mask source"),
    (lambda: editing.MaskLockingSettings(mask_draws=0), "num_draws"),
    (lambda: editing.MaskLockingSettings(mask_threshold=float("nan")), "threshold"),
    (lambda: editing.MaskLockingSettings(start="source"), "start='source' is not known"),
    (lambda: editing.MaskLockingSettings(composite=1), "composite must be True or False"),
    (lambda: editing.MaskSettings(strength=-0.1), "strength"),
    (lambda: editing.MaskSettings(normalise="l1"), "normalise"),
])
def test_settings_are_checked_once_when_built(make, message):
    with pytest.raises(CourseInputError, match=message):
        make()


def test_settings_are_frozen_and_given_as_objects(parts, case):
    settings = editing.InversionSettings()
    with pytest.raises(AttributeError):
        settings.num_steps = 3
    args = (parts, case.source_image, case.source_caption, case.target_caption)
    with pytest.raises(CourseInputError, match="inversion must be an editing.InversionSettings"):
        editing.inversion_edit(*args, inversion="direct")
    with pytest.raises(CourseInputError, match="settings must be an editing.PromptToPromptSettings"):
        editing.prompt_to_prompt(*args, settings={"local_blend": False})
    with pytest.raises(CourseInputError, match="settings must be an editing.MaskLockingSettings"):
        editing.mask_locking(*args, settings=editing.PromptToPromptSettings())
    with pytest.raises(CourseInputError, match="settings must be an editing.InversionSettings"):
        editing.invert(parts, torch.zeros(1, 4, 8, 8), "a red circle", "ddim")


def test_the_registry_takes_flat_options_or_settings_objects_and_refuses_unknown_ones(parts, case):
    method = editing.METHODS["mask_locking"]
    assert method.defaults["inversion"].method == "ddim"
    assert editing.METHODS["prompt_to_prompt"].defaults["inversion"].method == "edit_friendly"
    flat = method(parts, case.source_image, case.source_caption, case.target_caption, generator=0, mask=case.mask,
                  num_steps=np.int64(2), inversion="direct", start="noise")
    objects = method(parts, case.source_image, case.source_caption, case.target_caption, generator=0, mask=case.mask,
                     inversion=editing.InversionSettings("direct", 2),
                     settings=editing.MaskLockingSettings(start="noise"))
    direct = editing.mask_locking(parts, case.source_image, case.source_caption, case.target_caption, mask=case.mask,
                                  inversion=editing.InversionSettings("direct", 2),
                                  settings=editing.MaskLockingSettings(start="noise"), generator=0)
    assert torch.equal(flat, objects) and torch.equal(flat, direct.image)  # the registry gives the image alone
    with pytest.raises(CourseInputError, match="mask_locking takes no option 'num_step'; its options: .*num_steps"):
        method(parts, case.source_image, case.source_caption, case.target_caption, num_step=2)
    with pytest.raises(CourseInputError, match="sdedit takes no option 'inversion'"):
        editing.METHODS["sdedit"](parts, case.source_image, case.source_caption, case.target_caption, inversion="ddim")
    with pytest.raises(CourseInputError, match="unknown edit method"):
        editing.run_case("magic", parts, case)
    with pytest.raises(CourseInputError, match="method must be a METHODS name or a callable"):
        editing.run_case(3, parts, case)
    with pytest.raises(CourseInputError, match="case must have source_image"):
        editing.run_case("sdedit", parts, {"source_image": case.source_image})
    with pytest.raises(CourseInputError, match="name must be a new method name"):
        editing.register("sdedit", editing.METHODS["sdedit"])
    with pytest.raises(CourseInputError, match="must be an editing.EditMethod"):
        editing.register("mine", lambda *a, **k: None)


# ----------------------------------------------------------------------------------------------
# The other public functions: shapes, types and ranges
# ----------------------------------------------------------------------------------------------

def test_doors_of_the_lower_level_functions(parts, case, z0):
    src, tgt = case.source_caption, case.target_caption
    with pytest.raises(CourseInputError, match="parts must be a latent.UNetSystem"):
        editing.sdedit(object(), case.source_image, src, tgt)
    with pytest.raises(CourseInputError, match="prompts: prompts must be a str or a non-empty list"):
        editing.embed(parts, 3)
    with pytest.raises(CourseInputError, match="target_prompt: give one prompt, or one per image"):
        editing.sdedit(parts, case.source_image, src, [tgt, tgt], num_steps=2)
    with pytest.raises(CourseInputError, match="sample_mode='mean' is not known"):
        editing.encode_image(parts, case.source_image[None], sample_mode="mean")
    with pytest.raises(CourseInputError, match=r"latents must be \(B, 4, h, w\)"):
        editing.decode_latents(parts, torch.zeros(1, 3, 8, 8))
    with pytest.raises(CourseInputError, match="num_train_steps must be an int >= 10"):
        editing.edit_timesteps(10, 1.0, 5)
    with pytest.raises(CourseInputError, match="num_steps"):
        editing.edit_timesteps(True)
    with pytest.raises(CourseInputError, match="num_draws must be an int >= 1"):
        editing.difference_map(parts, z0, src, tgt, num_draws=0)
    with pytest.raises(CourseInputError, match="strength"):
        editing.attention_map(parts, z0, src, tgt, strength=1.5)
    with pytest.raises(CourseInputError, match="threshold must be a finite number in \\[0, 1\\)"):
        editing.mask_from_map(torch.rand(1, 1, 8, 8), 1.0)
    with pytest.raises(CourseInputError, match="grow_cells must be an int >= 0"):
        editing.mask_from_map(torch.rand(1, 1, 8, 8), 0.3, grow_cells=-1)
    with pytest.raises(CourseInputError, match="normalise='l2' is not known"):
        editing.mask_from_map(torch.rand(1, 1, 8, 8), 0.3, normalise="l2")
    with pytest.raises(CourseInputError, match="threshold"):
        editing.edit_mask(parts, case.source_image, src, tgt, threshold=float("nan"))
    with pytest.raises(CourseInputError, match="mask must be a torch.Tensor"):
        editing.check_mask([[True]], case.source_image[None])
    with pytest.raises(CourseInputError, match="row must be one of"):
        editing.layout_rows(torch.rand(4, 1, 2, 2), "cond")
    with pytest.raises(CourseInputError, match="4B rows"):
        editing.layout_rows(torch.rand(6, 1, 2, 2), "cond_src")
    with pytest.raises(CourseInputError, match="mode must be 'swap', 'refine' or 'auto'"):
        editing.token_mapper(parts.tokenizer, src, tgt, "exact")
    with pytest.raises(CourseInputError, match="source_prompt must be a str"):
        editing.changed_positions(parts.tokenizer, None, tgt)
    with pytest.raises(CourseInputError, match="inversions must be a non-empty list of editing.InversionSettings"):
        editing.reconstruction(parts, case.source_image, src, ["ddim"])
    with pytest.raises(CourseInputError, match="inversions must be a non-empty list"):
        editing.reconstruction(parts, case.source_image, src, [])


def test_doors_of_the_loop_and_the_controllers(parts, case, z0):
    src, tgt = case.source_caption, case.target_caption
    inv = editing.invert(parts, z0, src, TWO)
    with pytest.raises(CourseInputError, match="start must have the inversion's latent shape"):
        editing.edit_latents(parts, inv, tgt, start=torch.zeros(1, 4, 4, 4))
    with pytest.raises(CourseInputError, match="blend must be a callable"):
        editing.edit_latents(parts, inv, tgt, blend="where")
    with pytest.raises(CourseInputError, match="controller must be an editing.AttentionController"):
        editing.p2p_latents(parts, inv, tgt, controller=None)
    with pytest.raises(CourseInputError, match="mask must be a bool tensor at latent size"):
        editing.start_latents(inv, torch.ones(1, 1, 8, 8))
    with pytest.raises(CourseInputError, match="cross_window"):
        editing.AttentionReplace(cross_window=(0.9, 0.1))
    with pytest.raises(CourseInputError, match="mapper must be a 1-D integer tensor"):
        editing.AttentionReplace(mapper=torch.zeros(32))
    with pytest.raises(CourseInputError, match="scales holds 1 NaN"):
        editing.AttentionReweight(scales=torch.tensor([1.0, float("nan")]))
    with pytest.raises(CourseInputError, match="factors >= 0"):
        editing.AttentionReweight(scales=torch.tensor([1.0, -0.5]))
    assert editing.AttentionReweight(scales=torch.tensor([1.0, 0.0])).scales[1] == 0  # 0 removes a token's attention
    with pytest.raises(CourseInputError, match="threshold"):
        editing.LocalBlend([[2]], [[2]], side=8, threshold=1.5)
    with pytest.raises(CourseInputError, match="side"):
        editing.LocalBlend([[2]], [[2]], side=0)
    with pytest.raises(CourseInputError, match="one list of source positions and one of target positions"):
        editing.LocalBlend([[2]], [], side=8)
    assert editing.window_steps((0.0, 0.2), 4) == range(0, 0) and editing.window_steps((0.0, 0.2), 10) == range(0, 2)


def test_any_image_size_prompt_to_prompt_with_local_blending_and_the_attention_mask(parts):
    image = torch.rand(3, 48, 40) * 2 - 1  # 12 x 10 latents, not the UNet's sample_size
    out = editing.prompt_to_prompt(parts, image, "a red circle", "a blue circle", inversion=FIVE_P2P, generator=0)
    assert out.image.shape == image.shape and out.mask.shape == (1, 48, 40)
    mask = editing.edit_mask(parts, image, "a red circle", "a blue circle", source="attention", num_draws=1,
                             generator=0)
    assert mask.shape == (1, 1, 12, 10) and mask.any()


# ----------------------------------------------------------------------------------------------
# shapesedit
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench():
    return shapesedit.cases(20)


@pytest.mark.parametrize("convert, message", [
    (lambda x: (x + 1) * 127.5, r"\[0, 255\] pixels: convert with x / 127.5 - 1"),
    (lambda x: x * 1.3, r"images in \[-1, 1\].*Clamp a decoder's overshoot"),
    (lambda x: (x + 1) / 2, r"looks like pixels in \[0, 1\].*x \* 2 - 1"),
    (lambda x: ((x + 1) * 127.5).round().to(torch.uint8), "float image in \\[-1, 1\\], got dtype torch.uint8"),
])
def test_evaluate_refuses_outputs_in_another_pixel_range(bench, convert, message):
    with pytest.raises(CourseInputError, match=message):
        shapesedit.evaluate(lambda image, s, t, *, generator: convert(image), bench[:3], name="wrong range")


def test_the_range_check_never_flags_images_in_range_and_catches_most_unit_images():
    cases = shapesedit.cases()
    caught = 0
    for c in cases:
        for ok in (c.source_image, c.target_image, c.target_image * 1.04, torch.zeros_like(c.source_image),
                   torch.full_like(c.source_image, 0.5), (c.target_image + 1) / 4):
            shapesedit.check_edit_range(ok, c)  # never raises on an image in [-1, 1] (+ the tolerance)
        try:
            shapesedit.check_edit_range((c.target_image + 1) / 2, c)
        except CourseInputError:
            caught += 1
    # the rest: locked pixels of one colour, where a [0, 1] image cannot be told from a dull [-1, 1] one
    assert caught == sum(float(c.source_image[:, ~c.mask].std()) >= 0.1 for c in cases) >= 200, caught


def test_a_small_overshoot_is_clamped_and_scored_as_before(bench):
    exact = shapesedit.evaluate(shapesedit.ground_truth_method(bench), bench[:4], name="gt")
    over = shapesedit.evaluate(lambda image, s, t, *, generator: shapesedit.ground_truth_method(bench)(
        image, s, t, generator=generator) * 1.02, bench[:4], name="gt overshoot")
    assert [r["success"] for r in over["records"]] == [r["success"] for r in exact["records"]]


def test_shapesedit_doors(bench):
    assert len(shapesedit.cases(np.int64(3))) == 3
    for n in (0, True, 2.0):
        with pytest.raises(CourseInputError, match="n must be an int >= 1"):
            shapesedit.cases(n)
    with pytest.raises(CourseInputError, match="seed must be an int >= 0"):
        shapesedit.cases(2, seed=-1)
    seen = []
    shapesedit.evaluate(lambda image, s, t, *, generator: seen.append(generator.initial_seed()) or image, bench[:2],
                        name="numpy", seed=np.int64(5), batch_size=np.int64(1))
    assert seen == [5, 6]
    with pytest.raises(CourseInputError, match="batch_size must be an int >= 1"):
        shapesedit.evaluate(shapesedit.identity_method, bench[:2], name="b", batch_size=0)
    with pytest.raises(CourseInputError, match="method must be callable"):
        shapesedit.evaluate("sdedit", bench[:2], name="s")
    with pytest.raises(CourseInputError, match="non-empty list of cases"):
        shapesedit.evaluate(shapesedit.identity_method, [], name="e")
    with pytest.raises(CourseInputError, match="one prompt \\(or None\\) per case"):
        shapesedit.evaluate(shapesedit.identity_method, bench[:2], name="t", target_prompts=["a"])
    with pytest.raises(CourseInputError, match="case must be a case of shapesedit.cases"):
        shapesedit.score(bench[0].source_image, {"mask": bench[0].mask})
    x = torch.rand(3, 8, 8, dtype=torch.float64)
    with pytest.raises(CourseInputError, match="keep must be a bool tensor"):
        shapesedit.capped_psnr(x, x, torch.ones(8, 8))
    with pytest.raises(CourseInputError, match="x must be a floating-point tensor"):
        shapesedit.capped_psnr(torch.zeros(3, 8, 8, dtype=torch.long), x)
    assert math.isnan(shapesedit.capped_psnr(x * float("nan"), x))  # NaN in, NaN out: never a capped 60 dB
    assert shapesedit.wilson_interval(np.int64(40), np.int64(50)) == shapesedit.wilson_interval(40, 50)
    with pytest.raises(CourseInputError, match="n must be an int >= 1"):
        shapesedit.wilson_interval(0, 0)
    with pytest.raises(CourseInputError, match="edit kind"):
        shapesedit.format_table([], kind="rotate")
    with pytest.raises(CourseInputError, match="metric"):
        shapesedit.format_kind_table([], metric="accuracy")
    with pytest.raises(CourseInputError, match="x and y must be tensors of one shape"):
        shapesedit.ssim_map(x, x[:, :4])
    with pytest.raises(CourseInputError, match="keep must have shape"):
        shapesedit.masked_ssim(x, x, torch.ones(4, 4, dtype=torch.bool))


def test_load_results_refuses_a_file_that_is_not_shapesedit_results(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"benchmark": "inversions", "rows": []}')
    with pytest.raises(CourseInputError, match="is not a ShapesEdit results file"):
        shapesedit.load_results(path)
