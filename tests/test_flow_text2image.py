"""The flow family's text-to-image model (course_lib.flow_text2image): SD3's recipe and pipeline, checked against diffusers."""

from __future__ import annotations

import pytest
import torch

from course_lib import flow, flow_text2image, latent, models, shapes
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red circle in the top left", "a blue square on the right, on a white background"]
TINY = dict(num_layers=1, attention_head_dim=16, num_attention_heads=2, caption_projection_dim=32)


@pytest.fixture(scope="module")
def system():
    """A tiny random transformer (weights perturbed away from adaLN-zero), a random vae16-shaped VAE, the real towers."""
    transformer = flow_text2image.make_transformer(seed=1, **TINY)
    with torch.no_grad():
        for p in transformer.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    vae = vae_lib.make_vae(seed=2, **{**vae_lib.VAE16_CONFIG, "block_out_channels": (8, 16), "norm_num_groups": 8,
                                      "shift_factor": 0.1, "scaling_factor": 1.3}).eval()
    return flow_text2image.make_system(transformer, vae, device="cpu")


def test_the_hand_loop_equals_stable_diffusion_3s_pipeline(system, tmp_path):
    for g, steps in ((4.0, 6), (1.0, 3)):
        ours = flow_text2image.generate(system, PROMPTS, guidance_scale=g, num_steps=steps, generator=5)
        pipe = flow_text2image.make_pipeline(system)
        theirs = flow_text2image.pipeline_images(pipe, PROMPTS, guidance_scale=g, num_steps=steps, generator=5)
        assert (ours - theirs).abs().max() <= 1e-5, (g, steps)
    # the folder: saved with its manifest, loaded offline without T5, the same images
    manifest = flow_text2image.save_pipeline(system, tmp_path / "sd3", command="test")
    assert "transformer/diffusion_pytorch_model.safetensors" in manifest["files"]
    loaded = flow_text2image.load_pipeline(tmp_path / "sd3", device="cpu")
    again = flow_text2image.pipeline_images(loaded, PROMPTS, guidance_scale=4.0, num_steps=6, generator=5)
    first = flow_text2image.generate(system, PROMPTS, guidance_scale=4.0, num_steps=6, generator=5)
    assert (again - first).abs().max() <= 1e-5


def test_adaln_zero_starts_every_block_as_the_identity_and_predicts_zero():
    model = flow_text2image.make_transformer(seed=0, **TINY).eval()
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x, timestep=torch.tensor([500.0, 10.0]), encoder_hidden_states=torch.randn(2, 32, 128),
                    pooled_projections=torch.randn(2, 128)).sample
    assert torch.equal(out, torch.zeros_like(out))


def test_training_noise_levels_follow_sd3s_density_and_shift():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.training_utils import compute_density_for_timestep_sampling

    # the logit-normal law: the same draws as diffusers' sampler for one generator
    ours = flow.sample_sigmas(4096, torch.Generator().manual_seed(3), density="logit_normal")
    theirs = compute_density_for_timestep_sampling("logit_normal", 4096, logit_mean=0.0, logit_std=1.0,
                                                   generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ours, theirs, atol=1e-7)
    # the shift: what FlowMatchEulerDiscreteScheduler(shift) does to its own training table
    scheduler = FlowMatchEulerDiscreteScheduler(shift=flow_text2image.SHIFT)
    unshifted = torch.linspace(1, 1000, 1000).flip(0) / 1000  # the table before the shift: 1, 0.999, ..., 0.001
    assert torch.allclose(flow.shift_sigma(unshifted, flow_text2image.SHIFT), scheduler.sigmas, atol=1e-6)
    assert torch.allclose(scheduler.timesteps / 1000, scheduler.sigmas, atol=1e-6)  # the model reads 1000 sigma
    # and a Monte Carlo check of the shifted law's median: shift(0.5) = shift / (shift + 1)
    shifted = flow.sample_sigmas(20000, torch.Generator().manual_seed(4), density="logit_normal",
                                 shift=flow_text2image.SHIFT)
    assert abs(float(shifted.median()) - flow_text2image.SHIFT / (flow_text2image.SHIFT + 1)) < 0.01


def test_the_data_set_and_the_loss_with_caption_dropout(system):
    data = flow_text2image.latent_dataset(12, system, seed=3, batch_size=5)
    assert data["x0"].shape == (12, 4, 16, 16)
    assert data["encoder_hidden_states"].shape == (12, 32, 128) and data["pooled_projections"].shape == (12, 128)
    loss_fn = flow_text2image.loss_fn(flow_text2image.null_condition(system))
    batch = {k: v[:8] for k, v in data.items()}
    loss = loss_fn(system.transformer, batch, torch.Generator().manual_seed(0))
    again = loss_fn(system.transformer, batch, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss == again


def test_doors(system):
    parts_like = latent.UNetSystem.__new__(latent.UNetSystem)
    with pytest.raises(CourseInputError, match="text2image.generate"):
        flow_text2image.generate(parts_like, PROMPTS)
    with pytest.raises(CourseInputError, match="num_steps"):
        flow_text2image.generate(system, PROMPTS, num_steps=0)
    with pytest.raises(CourseInputError, match="shift"):
        flow_text2image.make_scheduler(0.0)
    with pytest.raises(CourseInputError, match="tokens"):
        flow_text2image.generate(system, ["a red circle in the top left and " * 8])
    with pytest.raises(CourseInputError, match="NaN"):
        flow_text2image.generate(system, PROMPTS[:1], latents=torch.full((1, 4, 16, 16), float("nan")))
    assert shapes.DEFAULT_SIZE == 32


def test_saving_the_pipeline_never_empties_a_folder_that_is_not_a_checkpoint(system, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(CourseInputError, match="not a checkpoint"):
        flow_text2image.save_pipeline(system, precious, command="test")
    assert (precious / "thesis.tex").read_text() == "years of work"
