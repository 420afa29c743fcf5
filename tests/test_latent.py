"""course_lib.latent: the latent system's steps against diffusers' pipelines, and a second family plugged in.

Oracles: StableDiffusionPipeline's own encode_prompt and prepare_latents on the same parts, its
DDIMScheduler, img2img's retrieve_latents, the VAE and the UNet called directly; for a VAE with a
shift_factor, Stable Diffusion 3's decoding formula; for a minimal flow-matching family written here
as a LatentSystem subclass (SD3Transformer2DModel, two CLIP text encoders, FlowMatchEulerDiscreteScheduler),
StableDiffusion3Pipeline's encode_prompt and prepare_latents on the same parts.
"""

from __future__ import annotations

import pytest
import torch

from course_lib import clip, guidance, latent, models, pipeline, shapes, text, text2image
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red circle in the top left", "a blue square on the right, on a black background"]


@pytest.fixture(scope="module")
def parts():
    unet = text2image.make_unet(seed=2, block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=2).eval()
    tokenizer, encoder = text2image.load_text_encoder(device="cpu")
    return text2image.Parts(unet, vae_lib.load_vae(device="cpu"), tokenizer, encoder)


@pytest.fixture(scope="module")
def images():
    return shapes.render(shapes.sample_scenes(2, seed=4, split="test"))


def test_parts_is_the_unet_system_with_the_course_scheduler(parts):
    from diffusers import DDIMScheduler

    assert text2image.Parts is latent.UNetSystem and isinstance(parts, latent.LatentSystem)
    assert parts.denoiser is parts.unet and parts.device == torch.device("cpu") and parts.dtype == torch.float32
    reference = DDIMScheduler(**text2image.SCHEDULER_CONFIG)
    assert torch.equal(parts.alpha_bars, reference.alphas_cumprod)
    assert parts.final_alpha_bar == float(reference.final_alpha_cumprod)  # set_alpha_to_one=False: alphas_cumprod[0]
    for n in (10, 25):
        reference.set_timesteps(n)
        assert torch.equal(parts.timesteps(n), reference.timesteps)
    assert repr(parts).startswith("UNetSystem(unet=UNet2DConditionModel, vae=AutoencoderKL")


def test_unet_system_steps_equal_the_sd_pipelines(parts, images, worst):
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

    pipe = pipeline.make_pipeline(parts)
    assert pipe.scheduler is parts.scheduler  # the system's scheduler, not a copy
    cond = parts.encode_prompt(PROMPTS)
    theirs, _ = pipe.encode_prompt(PROMPTS, torch.device("cpu"), 1, False)
    assert set(cond) == {"encoder_hidden_states"} and torch.equal(cond["encoder_hidden_states"], theirs)
    z = parts.prepare_latents(2, generator=3)
    z_pipe = pipe.prepare_latents(2, 4, 32, 32, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(3))
    assert torch.equal(z, z_pipe)
    with torch.no_grad():
        eps = parts.predict(z, 501, cond)
        assert eps.dtype == torch.float32
        assert torch.equal(eps, parts.unet(z, 501, encoder_hidden_states=theirs).sample)
        decoded = pipe.image_processor.postprocess(pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample,
                                                   output_type="pt")
        scale = parts.vae.config.scaling_factor
        mean = parts.vae.encode(images).latent_dist.mean * scale
        drawn = retrieve_latents(parts.vae.encode(images), generator=torch.Generator().manual_seed(5)) * scale
    worst("latent: decode_latents vs the pipeline's postprocessed image", float((parts.decode_latents(z) - (decoded * 2 - 1)).abs().max()))
    assert torch.allclose(parts.decode_latents(z), decoded * 2 - 1, atol=1e-6)
    assert torch.equal(parts.encode_image(images), mean)
    assert torch.equal(parts.encode_image(images, sample_mode="sample", generator=5), drawn)


def test_the_scheduler_is_built_once_not_per_step(parts, monkeypatch):
    from diffusers import DDIMScheduler

    built = []
    original = DDIMScheduler.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(DDIMScheduler, "__init__", counting)
    text2image.generate(parts, PROMPTS[:1], num_steps=4, generator=0)
    assert built == []
    text2image.Parts(parts.unet, parts.vae, parts.tokenizer, parts.text_encoder)
    assert built == [1]  # at construction


def test_a_vae_shift_factor_is_subtracted_on_encode_and_added_on_decode(images):
    vae = vae_lib.make_vae(seed=1, block_out_channels=(8, 16, 16), norm_num_groups=8, shift_factor=0.25,
                           scaling_factor=1.5).eval()
    system = text2image.Parts(text2image.make_unet(block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=2),
                              vae, *text2image.load_text_encoder(device="cpu"))
    with torch.no_grad():
        mean = vae.encode(images).latent_dist.mean
        z = system.encode_image(images)
        # Stable Diffusion 3's convention: (z - shift) * scale in, latents / scale + shift out
        assert torch.allclose(z, (mean - 0.25) * 1.5, atol=1e-6)
        back = vae.decode(z / 1.5 + 0.25).sample.clamp(-1, 1)
    assert torch.allclose(system.decode_latents(z), back, atol=1e-6)
    assert vae_lib.shift_factor(vae) == 0.25 and vae_lib.shift_factor(vae_lib.make_vae()) == 0.0


def test_call_model_runs_the_model_in_its_own_dtype_and_returns_float32():
    unet = text2image.make_unet(seed=4, block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=2)
    unet = unet.double().eval()
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 32, 64, generator=g)
    with torch.no_grad():
        out = latent.call_model(unet, x, 300, {"encoder_hidden_states": c})
        want = unet(x.double(), torch.tensor([300, 300]), encoder_hidden_states=c.double()).sample.float()
        per_row = latent.call_model(unet, x, torch.tensor([300, 300]), {"encoder_hidden_states": c})
    assert out.dtype == torch.float32 and torch.equal(out, want) and torch.equal(per_row, want)


# ----------------------------------------------------------------------------------------------
# A second family: Stable Diffusion 3's classes at toy size, written as a LatentSystem subclass
# ----------------------------------------------------------------------------------------------

class ToySD3System(latent.LatentSystem):
    """SD3's family in a few lines: two CLIP text encoders, an MMDiT, a flow-matching scheduler's sigmas."""

    components = ("transformer", "vae", "tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "scheduler")
    max_sequence_length = 256  # T5's length, zeros without a T5 encoder (StableDiffusion3Pipeline's default)

    def __init__(self, transformer, vae, tokenizer, text_encoder, tokenizer_2, text_encoder_2, scheduler):
        super().__init__(vae, scheduler)
        self.transformer, self.tokenizer, self.text_encoder = transformer, tokenizer, text_encoder
        self.tokenizer_2, self.text_encoder_2 = tokenizer_2, text_encoder_2
        self.sigmas = scheduler.sigmas.clone()  # the family's noise table, read once

    @property
    def denoiser(self):
        return self.transformer

    def encode_prompt(self, prompts):
        # each encoder's penultimate hidden states, side by side, zero-padded to joint_attention_dim, then
        # T5's zeros along the sequence; pooled = the two projected text embeddings side by side
        states, pooled = [], []
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = text.tokenize(prompts, tokenizer)
            with torch.no_grad():
                out = encoder(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled.append(out.text_embeds)
        width = self.transformer.config.joint_attention_dim
        clip_states = torch.nn.functional.pad(torch.cat(states, -1), (0, width - sum(s.shape[-1] for s in states)))
        t5 = torch.zeros(len(ids), self.max_sequence_length, width)
        return {"encoder_hidden_states": torch.cat([clip_states, t5], -2), "pooled_projections": torch.cat(pooled, -1)}

    def predict(self, x, sigma, condition):
        timestep = torch.full((len(x),), float(sigma) * 1000)
        return self.transformer(hidden_states=x, timestep=timestep, **condition).sample.float()


@pytest.fixture(scope="module")
def toy_sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer = text.build_tokenizer()
    encoders = []
    for seed, hidden in ((0, 16), (1, 24)):
        config = CLIPTextConfig(hidden_size=hidden, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                projection_dim=8, **text.text_config_kwargs(tokenizer))
        with models.seeded(seed):
            encoders.append(CLIPTextModelWithProjection(config).eval())
    transformer, vae = toy_transformer_and_vae(2, head_dim=8, joint_dim=48, width=16)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return ToySD3System(transformer, vae, tokenizer, encoders[0], tokenizer, encoders[1], scheduler)


def toy_transformer_and_vae(seed: int, *, head_dim: int, joint_dim: int, width: int):
    """A one-block SD3Transformer2DModel on 4 x 8 x 8 latents (patch 1) and a small AutoencoderKL with SD3's shift."""
    from diffusers import SD3Transformer2DModel

    with models.seeded(seed):
        transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                            attention_head_dim=head_dim, num_attention_heads=2,
                                            joint_attention_dim=joint_dim, caption_projection_dim=2 * head_dim,
                                            pooled_projection_dim=width, pos_embed_max_size=8).eval()
    vae = vae_lib.make_vae(seed=3, block_out_channels=(8, 16, 16), norm_num_groups=8, shift_factor=0.1,
                           scaling_factor=1.2).eval()
    return transformer, vae


def test_a_second_family_plugs_in_and_its_steps_equal_sd3s_pipeline(toy_sd3, images):
    from diffusers import StableDiffusion3Pipeline

    system = toy_sd3
    pipe = StableDiffusion3Pipeline(transformer=system.transformer, scheduler=system.scheduler, vae=system.vae,
                                    text_encoder=system.text_encoder, tokenizer=system.tokenizer,
                                    text_encoder_2=system.text_encoder_2, tokenizer_2=system.tokenizer_2,
                                    text_encoder_3=None, tokenizer_3=None)
    cond = system.encode_prompt(PROMPTS)
    embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS, None, None, device=torch.device("cpu"),
                                              do_classifier_free_guidance=False)
    assert torch.equal(cond["encoder_hidden_states"], embeds) and torch.equal(cond["pooled_projections"], pooled)
    # the shared steps, inherited unchanged
    z = system.prepare_latents(2, generator=7)
    assert torch.equal(z, pipe.prepare_latents(2, 4, 32, 32, torch.float32, torch.device("cpu"),
                                               torch.Generator().manual_seed(7)))
    with torch.no_grad():
        want = system.vae.decode(z / 1.2 + 0.1).sample.clamp(-1, 1)  # the SD3 pipeline's decoding
    assert torch.allclose(system.decode_latents(z), want, atol=1e-6)
    assert system.encode_image(images).shape == (2, 4, 8, 8)
    # classifier-free guidance through the system's own predict, with its two-part condition
    uncond = system.encode_prompt(["", ""])
    v = guidance.cfg_denoiser(system, 4.0, cond, uncond)(z, float(system.sigmas[0]))
    with torch.no_grad():
        v_c, v_u = system.predict(z, system.sigmas[0], cond), system.predict(z, system.sigmas[0], uncond)
    assert torch.allclose(v, v_u + 4.0 * (v_c - v_u), atol=1e-5)
    assert repr(system).startswith("ToySD3System(transformer=SD3Transformer2DModel")


def test_the_base_class_says_what_a_family_must_provide(parts):
    bare = latent.LatentSystem(parts.vae, parts.scheduler)
    for call in (lambda: bare.denoiser, lambda: bare.encode_prompt(["a"]), lambda: bare.predict(None, 0, {})):
        with pytest.raises(NotImplementedError):
            call()
    with pytest.raises(CourseInputError, match="vae must be a diffusers AutoencoderKL"):
        latent.LatentSystem(parts.unet, parts.scheduler)


# ----------------------------------------------------------------------------------------------
# The flow family (latent.FlowSystem) on the course's own CLIP towers, against StableDiffusion3Pipeline
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flow_system():
    from diffusers import FlowMatchEulerDiscreteScheduler

    towers = []
    for name, layers in (("clip", 1), ("clip_lit", 2)):
        model, tokenizer = clip.load(name, device="cpu")
        towers += [tokenizer, text.text_encoder_with_projection(model, layers)]
    transformer, vae = toy_transformer_and_vae(5, head_dim=16, joint_dim=128, width=128)
    return latent.FlowSystem(transformer, vae, *towers, FlowMatchEulerDiscreteScheduler(shift=3.0))


def test_the_course_towers_with_projection_equal_get_text_features():
    model, tokenizer = clip.load("clip", device="cpu")
    ids = text.tokenize(PROMPTS, tokenizer)
    full = text.text_encoder_with_projection(model)
    with torch.no_grad():
        want = model.get_text_features(input_ids=ids)
        want = getattr(want, "pooler_output", want)
        assert torch.equal(full(ids).text_embeds, want)
        cut = text.text_encoder_with_projection(model, 1)(ids, output_hidden_states=True)
        assert torch.equal(cut.hidden_states[-2], model.text_model(ids, output_hidden_states=True).hidden_states[0])
    for bad in (0, 4, 1.5, True):
        with pytest.raises(CourseInputError, match="num_layers"):
            text.text_encoder_with_projection(model, bad)


def test_the_flow_family_equals_sd3s_pipeline_step_by_step(flow_system):
    from course_lib import flow_text2image

    system = flow_system
    pipe = flow_text2image.make_pipeline(system)  # diffusers' StableDiffusion3Pipeline of the same modules, no T5
    cond = system.encode_prompt(PROMPTS)
    embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS, None, None, device=torch.device("cpu"),
                                              do_classifier_free_guidance=False, max_sequence_length=0)
    assert torch.equal(cond["encoder_hidden_states"], embeds) and torch.equal(cond["pooled_projections"], pooled)
    # the schedule: the pipeline's own sigmas (shifted, the last one shifted twice) and timesteps = 1000 sigma
    timesteps, sigmas = system.schedule(8)
    pipe.scheduler.set_timesteps(8)
    assert torch.equal(timesteps, pipe.scheduler.timesteps) and torch.equal(sigmas, pipe.scheduler.sigmas)
    # a hand-written Euler loop with CFG equals the pipeline's image for the same generator
    uncond = system.encode_prompt([""] * len(PROMPTS))
    z = system.prepare_latents(len(PROMPTS), generator=3)
    denoiser = guidance.cfg_denoiser(system, 4.0, cond, uncond, pipeline_convention=True)
    for i, t in enumerate(timesteps):
        z = z + (sigmas[i + 1] - sigmas[i]) * denoiser(z, t)
    images = system.decode_latents(z)
    want = pipe(PROMPTS, num_inference_steps=8, guidance_scale=4.0, generator=torch.Generator().manual_seed(3),
                max_sequence_length=0, output_type="pt").images * 2 - 1
    assert (images - want).abs().max() <= 1e-5
    assert system.timestep(sigmas[1]) == timesteps[1]
    with pytest.raises(CourseInputError, match="max_sequence_length"):
        latent.FlowSystem(system.transformer, system.vae, *[system.tokenizer, system.text_encoder] * 2,
                          system.scheduler, max_sequence_length=-1)
    with pytest.raises(CourseInputError, match="SD3Transformer2DModel"):
        latent.FlowSystem(system.vae, system.vae, *[system.tokenizer, system.text_encoder] * 2, system.scheduler)
