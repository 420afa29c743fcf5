"""course_lib.models: the time embedding against diffusers', the two denoisers, and sampling a trained
model through samplers.sample checked against diffusers' DDIMScheduler loop."""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel
from diffusers.models.embeddings import get_timestep_embedding

from course_lib import models, samplers, schedules
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

AB = schedules.NoiseSchedule("linear", 1000).alpha_bars


@pytest.mark.parametrize("dim", [16, 64])
def test_timestep_embedding_equals_diffusers(dim, worst):
    t = torch.tensor([0, 1, 17, 500, 999])
    ours = models.timestep_embedding(t, dim)
    theirs = get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)
    worst("models.timestep_embedding vs diffusers", (ours - theirs).abs().max().item())
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_time_mlp_shapes_size_and_timestep_forms():
    model = models.time_mlp(seed=0)
    assert 80_000 <= models.num_parameters(model) <= 100_000
    x = torch.randn(5, 2)
    out_int = model(x, 300)
    out_tensor = model(x, torch.full((5,), 300))
    assert out_int.shape == (5, 2)
    torch.testing.assert_close(out_int, out_tensor)


def test_seeded_construction_is_repeatable_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b, c = models.time_mlp(seed=1), models.time_mlp(seed=1), models.time_mlp(seed=2)
    assert torch.equal(torch.get_rng_state(), before)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_digits_unets_are_diffusers_unets_unconditional_or_with_a_null_class():
    plain = models.digits_unet(seed=0)
    assert isinstance(plain, UNet2DModel) and plain.config.num_class_embeds is None
    assert 1_000_000 <= models.num_parameters(plain) <= 1_300_000
    assert models.model_output(plain, torch.randn(2, 1, 16, 16), torch.tensor([3, 4])).shape == (2, 1, 16, 16)
    unet = models.digits_unet(seed=0, conditional=True)
    assert unet.config.num_class_embeds == models.NUM_DIGIT_CLASSES + 1 == models.NULL_CLASS + 1
    x = torch.randn(3, 1, 16, 16)
    out = models.model_output(unet, x, torch.tensor([1, 500, 999]), class_labels=torch.tensor([0, 9, models.NULL_CLASS]))
    assert out.shape == x.shape
    # the label matters
    other = models.model_output(unet, x, torch.tensor([1, 500, 999]), class_labels=torch.tensor([1, 8, 3]))
    assert not torch.allclose(out, other)


def test_model_output_reads_tuples_and_plain_tensors():
    unet = models.digits_unet(seed=0, conditional=True)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([5, 6])
    plain = unet(x, t, class_labels=torch.tensor([1, 2]), return_dict=False)[0]
    torch.testing.assert_close(models.model_output(unet, x, t, class_labels=torch.tensor([1, 2])), plain)


def test_as_denoiser_broadcasts_the_condition():
    unet = models.digits_unet(seed=0, conditional=True)
    denoise = models.as_denoiser(unet, class_labels=3)
    x = torch.randn(4, 1, 16, 16)
    expected = unet(x, torch.full((4,), 10), class_labels=torch.full((4,), 3)).sample
    torch.testing.assert_close(denoise(x, 10), expected)
    assert not unet.training


def test_generate_is_samplers_sample_with_a_ddim_step():
    model = models.time_mlp(seed=0)
    out = models.generate(model, (64, 2), AB, sampler="ddim", num_steps=10, generator=torch.Generator().manual_seed(4))
    x_T = torch.randn((64, 2), generator=torch.Generator().manual_seed(4))
    ts = samplers.inference_timesteps(1000, 10, "trailing")
    ref = samplers.sample(models.as_denoiser(model), x_T, ts, functools.partial(samplers.ddim_step, alpha_bars=AB))
    assert torch.equal(out.x0, ref.x0)


def test_generate_ddim_equals_the_diffusers_scheduler_loop(worst):
    model = models.time_mlp(seed=0)
    ours = models.generate(model, (64, 2), AB, sampler="ddim", num_steps=20, spacing="trailing",
                           generator=torch.Generator().manual_seed(1)).x0
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    sched.alphas_cumprod = AB.clone()
    sched.set_timesteps(20)
    x = torch.randn((64, 2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, int(t)), t, x).prev_sample
    worst("models.generate (DDIM-20) vs diffusers DDIMScheduler", (ours - x).abs().max().item())
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=0)


def test_generate_ddpm_is_seeded_and_keeps_the_trajectory():
    model = models.time_mlp(seed=0)
    a = models.generate(model, (8, 2), AB, sampler="ddpm", num_steps=50, generator=torch.Generator().manual_seed(2),
                        keep_trajectory=True)
    b = models.generate(model, (8, 2), AB, sampler="ddpm", num_steps=50, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.x0, b.x0) and len(a.trajectory) == 51


def test_time_mlp_save_and_load_pretrained(tmp_path):
    model = models.time_mlp(seed=3, hidden_dim=32)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = models.TimeMLP.from_pretrained(tmp_path)
    assert loaded.config.hidden_dim == 32
    x = torch.randn(4, 2)
    torch.testing.assert_close(loaded(x, 7), model(x, 7))


def test_generate_takes_every_sampler_and_refuses_a_flow_model():
    from course_lib import samplers

    model = models.time_mlp(seed=0)
    ab = models.SCHEDULE.alpha_bars
    for name in samplers.SAMPLERS:
        out = models.generate(model, (16, 2), ab, sampler=name, num_steps=4, generator=torch.Generator().manual_seed(0))
        assert out.x0.shape == (16, 2) and torch.isfinite(out.x0).all(), name
    ddim = models.generate(model, (16, 2), ab, sampler=samplers.DDIM(), num_steps=4,
                           generator=torch.Generator().manual_seed(0)).x0
    assert torch.equal(ddim, models.generate(model, (16, 2), ab, num_steps=4, generator=torch.Generator().manual_seed(0)).x0)
    with pytest.raises(CourseInputError, match="flow-matching velocity.*course_lib.flow.generate"):
        models.generate(models.time_mlp(seed=0, prediction_type="flow"), (4, 2), ab, num_steps=4)
    with pytest.raises(CourseInputError, match="unknown sampler 'dpm'"):
        models.generate(model, (4, 2), ab, sampler="dpm", num_steps=4)
    with pytest.raises(CourseInputError, match="prediction_type must be one of"):
        models.time_mlp(seed=0, prediction_type="velocity")
