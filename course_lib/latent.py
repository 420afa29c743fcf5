"""The latent text-to-image system: its parts, its scheduler with the noise table, and the pipeline's steps, once.   [notebooks 04-06]

Stable Diffusion and its successors are one machine in five steps, which diffusers' pipelines name:

    encode_prompt    prompts -> the condition the denoiser reads: a dict of its keyword arguments
    encode_image     images in [-1, 1] -> latents (z - shift_factor) * scaling_factor, z the VAE posterior's
                     mean ("argmax") or a draw ("sample", as img2img)                                  [LDM, nb 04]
    prepare_latents  z_T ~ N(0, I) drawn from a generator (noise.randn), or the user's own z_T, checked
    predict          the denoiser's output for (z_t, t, condition): float32, the model run in its own dtype
    decode_latents   latents -> images decoder(z / scaling_factor + shift_factor) in [-1, 1], float32, CPU

`LatentSystem` holds what every family shares: the VAE, the scheduler (built once, with its noise
table), and the steps on images and latents (encode_image, prepare_latents, decode_latents). A family
says how a prompt becomes a condition (encode_prompt), how its denoiser is called (predict) and what its
noise table is. `UNetSystem` is the family of Stable Diffusion 1.x and of the course's own model
(nb 06): a UNet2DConditionModel predicting eps, one CLIP text encoder read at last_hidden_state, and
a DDIMScheduler whose alphas_cumprod is the table every step reads (`alpha_bars`). A second family
(Stable Diffusion 3: SD3Transformer2DModel, two CLIP text encoders whose pooled embeddings join the
condition, FlowMatchEulerDiscreteScheduler's sigmas, a VAE with a shift_factor) subclasses
LatentSystem the same way; tests/test_latent.py plugs a minimal one in. text2image.Parts is UNetSystem.

`call_model` (models.call_model) is the course's one way to run a denoiser at one timestep (t broadcast to the batch, inputs
in the model's dtype, models.model_output); guidance's CFG, InstructPix2Pix's two-scale guidance and
every UNetSystem.predict go through it.

    >>> system = UNetSystem(unet, vae, tokenizer, text_encoder)          # the course's DDIM scheduler by default
    >>> cond = system.encode_prompt(["a red circle in the top left"])    # {"encoder_hidden_states": (1, 32, 64)}
    >>> z = system.prepare_latents(1, generator=0)                       # (1, 4, 8, 8)
    >>> eps = system.predict(z, 981, cond)                               # (1, 4, 8, 8) float32
    >>> images = system.decode_latents(z)                                # (1, 3, 32, 32) in [-1, 1]
"""

from __future__ import annotations

import torch

from course_lib import models, samplers, schedules, text
from course_lib import noise as noise_lib
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError, check_finite, check_float_tensor, check_int, check_positive_int

# The course's latent model is trained and sampled on Stable Diffusion's betas (scaled_linear, 0.00085
# to 0.012, 1,000 steps): the UNet family's noise schedule.
SCHEDULE = schedules.NoiseSchedule("scaled_linear", 1000)

# The DDIMScheduler the UNet family holds by default, and the one the pipeline folder ships: SCHEDULE's
# betas and Stable Diffusion 1.5's choices for the rest. StableDiffusionPipeline rewrites steps_offset != 1
# and clip_sample=True itself (with a deprecation warning), so these two are not free.
SCHEDULER_CONFIG = dict(
    **SCHEDULE.diffusers_config(),  # num_train_timesteps, beta_schedule, beta_start, beta_end
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,  # after the last step, alpha_bar = alphas_cumprod[0], not 1
    timestep_spacing="leading",
    steps_offset=1,  # leading timesteps + 1: 961, 921, ..., 1 for 25 steps
)


def make_scheduler():
    """Return a DDIMScheduler with SCHEDULER_CONFIG: the UNet family's scheduler.   [DDIM, nb 06]"""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


model_dtype = models.model_dtype  # the dtype of a model's weights
call_model = models.call_model  # the course's one denoiser call (t broadcast, the model's own dtype)


class LatentSystem:
    """A latent text-to-image model: VAE, denoiser, text encoder(s) and scheduler, with the pipeline's steps.   [LDM, nb 04-06]

    The base class holds the steps every family shares; a family (a subclass) sets `denoiser` and says
    how a prompt becomes its condition (encode_prompt) and how its denoiser is called (predict). The
    scheduler is built once, at construction, with the family's noise table.
    """

    def __init__(self, vae, scheduler):
        if getattr(getattr(vae, "config", None), "latent_channels", None) is None or not hasattr(vae, "decode"):
            raise CourseInputError(f"vae must be a diffusers AutoencoderKL (vae_lib.load_vae()), got {type(vae).__name__}.")
        self.vae = vae
        self.scheduler = scheduler

    # -- what a family provides ----------------------------------------------------------------------
    @property
    def denoiser(self) -> torch.nn.Module:
        """The network that predicts from z_t (a UNet, a transformer)."""
        raise NotImplementedError

    def encode_prompt(self, prompts) -> dict[str, torch.Tensor]:
        """Return the condition the denoiser reads for the prompts: a dict of its keyword arguments, one row per prompt."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor, t, condition: dict) -> torch.Tensor:
        """Return the denoiser's output for (z_t, t, condition), float32."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------------
    components = ("vae", "scheduler")  # the attributes that are parts, as a diffusers pipeline lists them

    def __repr__(self) -> str:
        named = ", ".join(f"{name}={type(getattr(self, name)).__name__}" for name in self.components)
        return f"{type(self).__name__}({named})"

    @property
    def device(self) -> torch.device:
        """The device the denoiser's weights live on (every step works there)."""
        return models.model_device(self.denoiser)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the denoiser's weights."""
        return model_dtype(self.denoiser)

    def latent_shape(self, batch_size: int, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """Return (B, C, h, w) of a batch of latents: the VAE's latent channels, the denoiser's sample size (or `size`)."""
        if size is None:
            sample = self.denoiser.config.sample_size
            size = (sample, sample) if isinstance(sample, int) else tuple(sample)
        return (batch_size, self.vae.config.latent_channels, *size)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor, *, generator=None, sample_mode: str = "argmax") -> torch.Tensor:
        """Return scaled latents (z - shift) * scale, float32 on the system's device, z = the posterior mean or a draw.   [LDM, nb 04, 07]

        sample_mode 'argmax' (the mean, default) or 'sample' (a draw from `generator`, as img2img
        encodes). Shapes: images (B, 3, H, W) in [-1, 1] -> (B, C, H/f, W/f).
        """
        vae_lib.check_images(images, self.vae, "images")
        return vae_lib.encode(self.vae, images, generator=generator, sample_mode=sample_mode).float().to(self.device)

    def prepare_latents(self, batch_size: int, *, generator=None, latents: torch.Tensor | None = None,
                        dtype: torch.dtype | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Return z_T (B, C, h, w) on the system's device: N(0, I) drawn from `generator`, or the given latents checked.   [nb 06]

        Drawn as diffusers' randn_tensor draws (on the generator's device, then moved), so one seed gives
        one z_T on any device. Given latents must have the shape latent_shape(batch_size, size) and be
        finite (a NaN would come out as an all-NaN image). dtype: the denoiser's unless given.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        shape = self.latent_shape(batch_size, size)
        dtype = self.dtype if dtype is None else dtype
        if latents is None:
            return noise_lib.randn(shape, noise_lib.as_generator(generator), device=self.device, dtype=dtype)
        check_float_tensor(latents, "latents")
        if tuple(latents.shape) != shape:
            raise CourseInputError(f"latents must have shape {shape} (one z_T per prompt), got {tuple(latents.shape)}.")
        check_finite(latents, "latents")
        return latents.to(self.device, dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Return images decoder(z / scale + shift) clamped to [-1, 1], float32 on the CPU.   [LDM, nb 04]

        The pipeline's output_type="pt" image is (this + 1) / 2. Shapes: (B, C, h, w) -> (B, 3, f h, f w).
        """
        return vae_lib.decode(self.vae, latents).float().clamp(-1, 1).cpu()


class UNetSystem(LatentSystem):
    """Stable Diffusion 1.x's family: an eps-predicting UNet2DConditionModel, one CLIP text encoder, DDIM.   [LDM, nb 06]

    UNetSystem(unet, vae, tokenizer, text_encoder, scheduler=None): the components of diffusers'
    StableDiffusionPipeline; scheduler defaults to the course's DDIMScheduler (SCHEDULER_CONFIG). Its
    float32 alphas_cumprod is read once, here: `alpha_bars` is the table every step reads (diffusers'
    float32 cumprod; SCHEDULE.alpha_bars, the float64 product rounded, differs by <= 5e-7, which moves
    25-step latents by ~3e-5), and `final_alpha_bar` where DDIM lands after its last step.
    The condition is {"encoder_hidden_states": (B, L, D)}, the text encoder's last_hidden_state.
    """

    components = ("unet", "vae", "tokenizer", "text_encoder", "scheduler")

    def __init__(self, unet, vae, tokenizer, text_encoder, scheduler=None):
        super().__init__(vae, make_scheduler() if scheduler is None else scheduler)
        config = getattr(unet, "config", None)
        if getattr(config, "sample_size", None) is None or getattr(config, "cross_attention_dim", None) is None:
            raise CourseInputError(f"unet must be a diffusers UNet2DConditionModel (text2image.make_unet() or a "
                                   f"pipeline's unet), got {type(unet).__name__}.")
        text.text_encoder_of(text_encoder)  # raises for anything but a CLIP text model
        table = getattr(self.scheduler, "alphas_cumprod", None)
        if table is None:
            raise CourseInputError(f"the scheduler must hold alphas_cumprod (a DDPM-family scheduler such as "
                                   f"DDIMScheduler), got {type(self.scheduler).__name__}.")
        prediction = self.scheduler.config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise CourseInputError(f"the scheduler says prediction_type={prediction!r}; the course's samplers here read "
                                   f"an eps-predicting UNet (prediction_type='epsilon').")
        self.unet, self.tokenizer, self.text_encoder = unet, tokenizer, text_encoder
        self._alpha_bars = table.detach().clone().float().cpu()
        self.final_alpha_bar = 1.0 if self.scheduler.config.get("set_alpha_to_one", False) else float(self._alpha_bars[0])
        self.spacing = self.scheduler.config.get("timestep_spacing", "leading")
        self.steps_offset = int(self.scheduler.config.get("steps_offset", 0))

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.unet

    @property
    def alpha_bars(self) -> torch.Tensor:
        """The scheduler's alphas_cumprod (T,) float32 on the system's device: alpha_bar_t of every step."""
        return self._alpha_bars.to(self.device)

    def timesteps(self, num_steps: int, sampler="ddim") -> torch.Tensor:
        """Return the sampler's timesteps with the scheduler's spacing and steps_offset (961, 921, ..., 1 for 25 DDIM steps)."""
        return samplers.get_sampler(sampler).timesteps(len(self._alpha_bars), num_steps, self.spacing,
                                                       offset=self.steps_offset)

    def encode_prompt(self, prompts) -> dict[str, torch.Tensor]:
        """Return {"encoder_hidden_states": (B, L, D)}: text.encode_prompt, as StableDiffusionPipeline.encode_prompt.   [nb 05-06]

        Prompts longer than the tokenizer's model_max_length are refused (text.check_prompt_lengths);
        "" gives the unconditional row of classifier-free guidance.
        """
        return {"encoder_hidden_states": text.encode_prompt(prompts, self.tokenizer, self.text_encoder,
                                                            device=self.device)}

    def predict(self, x: torch.Tensor, t, condition: dict) -> torch.Tensor:
        """Return eps_hat(z_t, t, c) (B, C, h, w) in x's dtype: call_model on the UNet."""
        return call_model(self.unet, x, t, condition)


class FlowSystem(LatentSystem):
    """Stable Diffusion 3's family: an MMDiT predicting the velocity eps - x0, two CLIP text encoders, flow sigmas.   [SD3, nb 10]

    FlowSystem(transformer, vae, tokenizer, text_encoder, tokenizer_2, text_encoder_2, scheduler,
    max_sequence_length=0): the components of diffusers' StableDiffusion3Pipeline without T5
    (text_encoder_3 = None). transformer: SD3Transformer2DModel; text encoders: CLIPTextModelWithProjection
    (text.text_encoder_with_projection); scheduler: FlowMatchEulerDiscreteScheduler, whose `shift` bends the
    sigmas toward noise. The path is x_sigma = (1 - sigma) x0 + sigma eps (sigma 1 = noise), the transformer
    reads timestep t = 1000 sigma, and predicts v = eps - x0 (flow.py's convention, nb 03b).

    The condition is {"encoder_hidden_states": (B, L + M, joint_attention_dim), "pooled_projections":
    (B, P)}: the two encoders' penultimate states side by side, zero-padded to joint_attention_dim, then
    max_sequence_length rows of zeros where T5's states would be; pooled = the two projected pooled
    embeddings side by side. Without T5 the zero rows are all one token (the context embedder's bias), so
    M changes the images: sample with the M the model was trained with (the pipeline's own default is 256).
    """

    components = ("transformer", "vae", "tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "scheduler")

    def __init__(self, transformer, vae, tokenizer, text_encoder, tokenizer_2, text_encoder_2, scheduler, *,
                 max_sequence_length: int = 0):
        super().__init__(vae, scheduler)
        config = getattr(transformer, "config", None)
        if getattr(config, "joint_attention_dim", None) is None or getattr(config, "pooled_projection_dim", None) is None:
            raise CourseInputError(f"transformer must be a diffusers SD3Transformer2DModel (an MMDiT), "
                                   f"got {type(transformer).__name__}.")
        if not hasattr(scheduler, "sigmas") or "shift" not in getattr(scheduler, "config", {}):
            raise CourseInputError(f"the scheduler must be a FlowMatchEulerDiscreteScheduler (flow sigmas with a shift), "
                                   f"got {type(scheduler).__name__}.")
        self.transformer = transformer
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.tokenizer_2, self.text_encoder_2 = tokenizer_2, text_encoder_2
        self.max_sequence_length = check_int(max_sequence_length, "max_sequence_length", minimum=0, maximum=512,
                                             hint="the rows of zeros that stand for T5's states")
        self.shift = float(scheduler.config["shift"])
        self.num_train_timesteps = int(scheduler.config["num_train_timesteps"])
        self._schedules: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer

    def schedule(self, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (timesteps (N,), sigmas (N + 1,)) float32 of an N-step sampling run, as the pipeline's scheduler sets them.

        FlowMatchEulerDiscreteScheduler.set_timesteps(N): sigmas from 1 down to its smallest training sigma,
        shifted (sigma' = shift sigma / (1 + (shift - 1) sigma)), then 0 appended; timesteps = 1000 sigma.
        Computed once per N and kept (the scheduler is stateful; the copies are not).
        """
        num_steps = check_positive_int(num_steps, "num_steps")
        if num_steps not in self._schedules:
            self.scheduler.set_timesteps(num_steps, device="cpu")
            self._schedules[num_steps] = (self.scheduler.timesteps.clone().float(), self.scheduler.sigmas.clone().float())
        timesteps, sigmas = self._schedules[num_steps]
        return timesteps.to(self.device), sigmas.to(self.device)

    def timestep(self, sigma) -> torch.Tensor:
        """Return the timestep the transformer reads at noise level sigma: 1000 sigma, float32 (the scheduler's rule)."""
        return torch.as_tensor(sigma, dtype=torch.float32) * self.num_train_timesteps

    def encode_prompt(self, prompts) -> dict[str, torch.Tensor]:
        """Return {"encoder_hidden_states", "pooled_projections"}: StableDiffusion3Pipeline.encode_prompt without T5.   [SD3, nb 10]

        Prompts longer than the tokenizers' model_max_length are refused; "" gives the unconditional rows.
        """
        states, pooled = [], []
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            hidden, embeds = text.encode_prompt_pooled(prompts, tokenizer, encoder, device=self.device)
            states.append(hidden)
            pooled.append(embeds)
        width = self.transformer.config.joint_attention_dim
        clip_states = torch.cat(states, -1)
        clip_states = torch.nn.functional.pad(clip_states, (0, width - clip_states.shape[-1]))
        t5 = torch.zeros(len(clip_states), self.max_sequence_length, width, dtype=clip_states.dtype,
                         device=clip_states.device)
        return {"encoder_hidden_states": torch.cat([clip_states, t5], -2), "pooled_projections": torch.cat(pooled, -1)}

    def predict(self, x: torch.Tensor, t, condition: dict) -> torch.Tensor:
        """Return v_hat(x_sigma, t, c) = the predicted eps - x0 (B, C, h, w) in x's dtype; t = 1000 sigma (self.timestep)."""
        return call_model(self.transformer, x, t, condition)


def check_system(system, cls: type = LatentSystem, name: str = "parts") -> LatentSystem:
    """Return `system` if it is a `cls` (a LatentSystem by default), else raise saying how to get one."""
    if not isinstance(system, cls):
        raise CourseInputError(f"{name} must be a latent.{cls.__name__} (text2image.load_parts(), or "
                               f"text2image.Parts(unet, vae, tokenizer, text_encoder)), got {type(system).__name__}.")
    return system
