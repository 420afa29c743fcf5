"""Probes of the core's doors: bad and unusual input to every public function of the diffusion maths and sampling.

schedules, posterior, samplers, models, flow, mixtures, noise and validation, tried as a hostile new user would:
wrong types, NaN and infinities, empty input, negatives, bool where an int is meant, numpy scalars, float64,
wrong shapes, out-of-range timesteps, int seeds. Each probe expects either a CourseInputError whose message
names the parameter (refused) or acceptance with a result checked against an independent computation
(accepted). None may end in a raw error from torch or Python, or in a silent NaN.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from course_lib import flow, mixtures, models, noise, posterior, samplers, schedules, validation
from probing import accepted, close, equal, refused

pytestmark = pytest.mark.usefixtures("one_thread")

NAN = float("nan")
SCHEDULE = schedules.NoiseSchedule("linear")
AB, BETAS = SCHEDULE.alpha_bars, SCHEDULE.betas
X = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
X_NAN = X.clone().index_fill_(0, torch.tensor([1]), NAN)
X_INT = torch.ones(4, 2, dtype=torch.long)
RING = mixtures.ring()
MLP = models.time_mlp(seed=0, hidden_dim=16, num_layers=1, time_embed_dim=8)
FLOW_MLP = models.time_mlp(seed=0, hidden_dim=16, num_layers=1, time_embed_dim=8, prediction_type="flow")
DDIM_STEP = functools.partial(samplers.ddim_step, alpha_bars=AB)


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def zero_eps(x, t):
    return torch.zeros_like(x)


def _inference_table() -> torch.Tensor:
    with torch.inference_mode():
        return torch.linspace(0.9, 0.1, 5)


def _spoiled_after_check() -> torch.Tensor:
    """A table that passed the check once, then was changed in place: the remembered check must not hold for it."""
    table = AB.clone()
    validation.check_alpha_bars(table)
    table[3] = 2.0
    return table


PROBES = {
    # ---------------------------------------------------------------- schedules
    "linear_betas numpy ints and floats": (lambda: schedules.linear_betas(np.int64(10), np.float32(1e-4), np.float64(0.02)),
                                           close(schedules.linear_betas(10, float(np.float32(1e-4)), 0.02))),
    "linear_betas bool steps": (lambda: schedules.linear_betas(True), refused("num_steps", "True")),
    "linear_betas NaN start": (lambda: schedules.linear_betas(10, NAN, 0.02), refused("beta_start", "finite")),
    "linear_betas str end": (lambda: schedules.linear_betas(10, 1e-4, "0.02"), refused("beta_end")),
    "linear_betas start > end": (lambda: schedules.linear_betas(10, 0.02, 1e-4), refused("beta_start <= beta_end")),
    "scaled_linear_betas zero steps": (lambda: schedules.scaled_linear_betas(0), refused("num_steps")),
    "cosine_betas max_beta 0": (lambda: schedules.cosine_betas(10, max_beta=0), refused("max_beta")),
    "cosine_betas float64 ok": (lambda: schedules.cosine_betas(np.int64(10)), accepted(lambda b: b.shape == (10,))),
    "cosine_alpha_bar u outside": (lambda: schedules.cosine_alpha_bar(torch.tensor([0.5, 1.5])), refused("u = t / T")),
    "cosine_alpha_bar u NaN": (lambda: schedules.cosine_alpha_bar(torch.tensor([NAN])), refused("u = t / T")),
    "cosine_alpha_bar negative s": (lambda: schedules.cosine_alpha_bar(torch.tensor([0.5]), s=-1), refused("s must")),
    "alpha_bars_from_betas given alpha_bars": (lambda: schedules.alpha_bars_from_betas(AB),
                                               refused("betas", "look like alpha_bars")),
    "alpha_bars_from_betas NaN": (lambda: schedules.alpha_bars_from_betas(torch.tensor([0.1, NAN])),
                                  refused("betas", "NaN")),
    "alpha_bars_from_betas negative": (lambda: schedules.alpha_bars_from_betas(torch.tensor([0.1, -0.1])),
                                       refused("betas", "(0, 1]")),
    "alpha_bars_from_betas empty": (lambda: schedules.alpha_bars_from_betas(torch.tensor([])), refused("betas", "non-empty")),
    "alpha_bars_from_betas float64": (lambda: schedules.alpha_bars_from_betas(BETAS.double()),
                                      close(AB, atol=1e-7)),
    "snr outside [0, 1]": (lambda: schedules.snr(torch.tensor([1.5])), refused("alpha_bars", "[0, 1]")),
    "snr NaN": (lambda: schedules.snr(torch.tensor([NAN])), refused("alpha_bars")),
    "NoiseSchedule numpy num_steps": (lambda: schedules.NoiseSchedule("linear", np.int64(50)).to_config(),
                                      accepted(lambda c: type(c["num_steps"]) is int and c["num_steps"] == 50)),
    "NoiseSchedule numpy beta_start": (lambda: schedules.NoiseSchedule("linear", 10, np.float32(1e-4)).to_config(),
                                       accepted(lambda c: type(c["beta_start"]) is float)),
    "NoiseSchedule bool steps": (lambda: schedules.NoiseSchedule("linear", True), refused("num_steps")),
    "NoiseSchedule NaN beta_end": (lambda: schedules.NoiseSchedule("linear", 10, beta_end=NAN), refused("beta_end")),
    "gather numpy t": (lambda: schedules.gather(AB, np.int64(5), X), close(AB[5])),
    "gather NaN table": (lambda: schedules.gather(torch.tensor([NAN, 0.5]), 0, X), refused("values", "NaN")),
    "gather int like": (lambda: schedules.gather(AB, 5, X_INT), refused("like")),
    "q_sample int seed": (lambda: schedules.q_sample(X, 5, AB, generator=3),
                          equal(lambda: schedules.q_sample(X, 5, AB, generator=g(3)))),
    "q_sample numpy t": (lambda: schedules.q_sample(X, np.int64(5), AB, noise=X),
                         close(AB[5].sqrt() * X + (1 - AB[5]).sqrt() * X)),
    "q_sample bool t": (lambda: schedules.q_sample(X, True, AB), refused("t must be an int")),
    "q_sample NaN x0": (lambda: schedules.q_sample(X_NAN, 5, AB), refused("x0", "NaN")),
    "q_sample NaN noise": (lambda: schedules.q_sample(X, 5, AB, noise=X_NAN), refused("noise", "NaN")),
    "q_sample betas as alpha_bars": (lambda: schedules.q_sample(X, 5, BETAS), refused("alpha_bars", "betas")),
    "q_sample reversed alpha_bars": (lambda: schedules.q_sample(X, 5, AB.flip(0)), refused("alpha_bars", "reverse order")),
    "q_sample str seed": (lambda: schedules.q_sample(X, 5, AB, generator="0"), refused("generator", "int seed")),
    "q_sample float64": (lambda: schedules.q_sample(X.double(), 5, AB, noise=X.double()),
                         accepted(lambda out: out.dtype == torch.float64)),
    "q_step int seed": (lambda: schedules.q_step(X, 5, BETAS, generator=1),
                        equal(lambda: schedules.q_step(X, 5, BETAS, generator=g(1)))),
    "q_step alpha_bars as betas": (lambda: schedules.q_step(X, 5, AB), refused("betas", "alpha_bars")),
    "q_mean_variance out of range": (lambda: schedules.q_mean_variance(X, 1000, AB), refused("t=1000", "0..999")),
    # ---------------------------------------------------------------- posterior
    "alpha_bars_at numpy t": (lambda: posterior.alpha_bars_at(np.int64(5), np.int64(4), AB, X)[1],
                              close(AB[4])),
    "alpha_bars_at betas": (lambda: posterior.alpha_bars_at(5, 4, BETAS, X), refused("alpha_bars", "betas")),
    "alpha_bars_at NaN final": (lambda: posterior.alpha_bars_at(5, -1, AB, X, NAN), refused("final_alpha_bar")),
    "check_final_alpha_bar 0": (lambda: posterior.check_final_alpha_bar(0), refused("final_alpha_bar must be in (0, 1]")),
    "posterior_coefficients numpy": (lambda: posterior.posterior_coefficients(np.float32(0.5), np.float64(0.6))[2],
                                     close(torch.tensor((1 - 0.6) / (1 - 0.5) * (1 - 0.5 / 0.6)))),
    "posterior_coefficients swapped": (lambda: posterior.posterior_coefficients(0.6, 0.5), refused("alpha_bar_prev", "swap")),
    "posterior_coefficients ab_t = 1": (lambda: posterior.posterior_coefficients(1.0, 1.0), refused("alpha_bar_t < 1")),
    "posterior_coefficients NaN": (lambda: posterior.posterior_coefficients(NAN, 0.5), refused("alpha_bar_t")),
    "posterior_coefficients str": (lambda: posterior.posterior_coefficients("0.5", 0.6), refused("alpha_bar_t")),
    "q_posterior numpy t_prev": (lambda: posterior.q_posterior(X, X, 5, AB, t_prev=np.int64(3))[0],
                                 accepted(lambda m: bool(torch.isfinite(m).all()))),
    "q_posterior betas": (lambda: posterior.q_posterior(X, X, 5, BETAS), refused("alpha_bars", "betas")),
    "x0_from_eps at ab 0": (lambda: posterior.x0_from_eps(X, X, 0.0), refused("alpha_bar_t = 0", "divides by zero")),
    "x0_from_eps numpy ab": (lambda: posterior.x0_from_eps(X, X, np.float32(0.25)), close(2 * (X - 0.75**0.5 * X))),
    "x0_from_eps NaN ab": (lambda: posterior.x0_from_eps(X, X, NAN), refused("alpha_bar_t", "[0, 1]")),
    "x0_from_eps ab above 1": (lambda: posterior.x0_from_eps(X, X, 1.5), refused("alpha_bar_t", "[0, 1]")),
    "eps_from_x0 at ab 1": (lambda: posterior.eps_from_x0(X, X, 1.0), refused("alpha_bar_t = 1")),
    "v_from_x0_eps tensor ab 2": (lambda: posterior.v_from_x0_eps(X, X, torch.tensor(2.0)), refused("alpha_bar_t")),
    "predict_x0_eps flow": (lambda: posterior.predict_x0_eps(X, X, 0.5, "flow"), refused("prediction_type='flow'")),
    "model_prediction_type no config": (lambda: posterior.model_prediction_type(object()), accepted(lambda p: p == "epsilon")),
    # ---------------------------------------------------------------- samplers: timesteps
    "inference_timesteps numpy": (lambda: samplers.inference_timesteps(np.int64(1000), np.int64(10), "leading",
                                                                       np.int64(1)),
                                  equal(torch.arange(9, -1, -1) * 100 + 1)),
    "inference_timesteps bool steps": (lambda: samplers.inference_timesteps(1000, True), refused("num_steps")),
    "inference_timesteps bool offset": (lambda: samplers.inference_timesteps(1000, 10, offset=True), refused("offset")),
    "inference_timesteps None spacing": (lambda: samplers.inference_timesteps(1000, 10, None), refused("spacing")),
    "fractional_linspace is diffusers'": (lambda: samplers.fractional_linspace(1000, 7)[:4],
                                          equal(torch.tensor([999.0, 832.5, 666.0, 499.5]))),
    "fractional_linspace too many": (lambda: samplers.fractional_linspace(10, 11), refused("num_steps")),
    "previous_timestep fractional": (lambda: samplers.previous_timestep(samplers.fractional_linspace(1000, 7), 832.5),
                                     accepted(lambda t: t == 666)),
    "previous_timestep missing": (lambda: samplers.previous_timestep([9, 5, 1], 4), refused("t=4")),
    "previous_timestep str": (lambda: samplers.previous_timestep("951", 9), refused("timesteps")),
    # ---------------------------------------------------------------- samplers: steps
    "ddpm_step betas as table": (lambda: samplers.ddpm_step(X, X, 5, 4, BETAS), refused("alpha_bars", "betas")),
    "ddpm_step int seed": (lambda: samplers.ddpm_step(X, X, 5, 4, AB, generator=2).x_prev,
                           equal(lambda: samplers.ddpm_step(X, X, 5, 4, AB, generator=g(2)).x_prev)),
    "ddpm_step clip_sample str": (lambda: samplers.ddpm_step(X, X, 5, 4, AB, clip_sample="yes"), refused("clip_sample")),
    "ddpm_step clip range 0": (lambda: samplers.ddpm_step(X, X, 5, 4, AB, clip_sample=True, clip_sample_range=0),
                               refused("clip_sample_range")),
    "ddpm_step float t": (lambda: samplers.ddpm_step(X, X, torch.tensor(5.0), 4, AB), refused("t must hold integer")),
    "ddpm_step float64 xt": (lambda: samplers.ddpm_step(X.double(), X.double(), 5, 4, AB, noise=X.double()).x_prev,
                             accepted(lambda x: x.dtype == torch.float64)),
    "ddim_step NaN eta": (lambda: samplers.ddim_step(X, X, 5, 4, AB, eta=NAN), refused("eta", "finite")),
    "ddim_step numpy eta": (lambda: samplers.ddim_step(X, X, 5, 4, AB, eta=np.float32(0.5), noise=X).x_prev,
                            equal(lambda: samplers.ddim_step(X, X, 5, 4, AB, eta=0.5, noise=X).x_prev)),
    "ddim_step bool eta": (lambda: samplers.ddim_step(X, X, 5, 4, AB, eta=True), refused("eta")),
    "ddim_step use_clipped str": (lambda: samplers.ddim_step(X, X, 5, 4, AB, use_clipped_model_output="no"),
                                  refused("use_clipped_model_output")),
    "ddim_step numpy final": (lambda: samplers.ddim_step(zero_eps(X, 0), X, 999, -1, AB, final_alpha_bar=np.float32(0.25)).x_prev,
                              close(0.5 * X / AB[999].sqrt(), atol=1e-4)),
    "ddim_step final below ab_t": (lambda: samplers.ddim_step(X, X, 5, -1, AB, final_alpha_bar=0.25),
                                   refused("final_alpha_bar=0.25 is below alpha_bar at t=5")),
    "ddim_step final 0": (lambda: samplers.ddim_step(X, X, 5, -1, AB, final_alpha_bar=0), refused("final_alpha_bar")),
    "ddim_step NaN xt shape": (lambda: samplers.ddim_step(X, X[:2], 5, 4, AB), refused("shapes must match")),
    "ddim_sigma NaN eta": (lambda: samplers.ddim_sigma(0.5, 0.6, NAN), refused("eta")),
    "ddim_sigma swapped": (lambda: samplers.ddim_sigma(0.6, 0.5, 1.0), refused("alpha_bar_prev")),
    "ddim_sigma numpy": (lambda: samplers.ddim_sigma(np.float32(0.5), 0.6, 1.0),
                         close(torch.tensor(math.sqrt(0.4 / 0.5 * (1 - 0.5 / 0.6))))),
    "karras_sigma ab 0": (lambda: samplers.karras_sigma(0.0), refused("alpha_bar")),
    "karras_sigma numpy": (lambda: samplers.karras_sigma(np.float32(0.25)), close(torch.tensor(math.sqrt(3.0)))),
    "karras_sigma NaN": (lambda: samplers.karras_sigma(torch.tensor([NAN])), refused("alpha_bar", "(0, 1]")),
    # ---------------------------------------------------------------- samplers: objects
    "get_sampler numpy eta": (lambda: samplers.get_sampler("DDIM", eta=np.float64(0.3)).eta, accepted(lambda e: e == 0.3)),
    "get_sampler None": (lambda: samplers.get_sampler(None), refused("unknown sampler None")),
    "get_sampler negative eta": (lambda: samplers.get_sampler("ddim", eta=-1), refused("eta must be >= 0")),
    "get_sampler option of another": (lambda: samplers.get_sampler("heun", eta=0.1), refused("heun takes the options")),
    "Euler karras sigmas": (lambda: samplers.Euler(use_karras_sigmas=True), refused("use_karras_sigmas", "Karras sigmas")),
    "DDPM variance_type": (lambda: samplers.DDPM(variance_type="learned"), refused("variance_type")),
    "DDIM clip_sample int": (lambda: samplers.DDIM(clip_sample=1), refused("clip_sample")),
    "Sampler.timesteps zero": (lambda: samplers.DDIM().timesteps(1000, 0), refused("num_steps")),
    "Euler linspace offset str": (lambda: samplers.Euler().timesteps(1000, 7, "linspace", offset="1"), refused("offset")),
    "DPM leading all steps": (lambda: samplers.DPMSolverPP2M().timesteps(1000, 1000, "leading"), refused("num_steps")),
    "Heun steps_for numpy": (lambda: samplers.Heun().steps_for(np.int64(19)), accepted(lambda n: n == 10)),
    "Heun steps_for bool": (lambda: samplers.Heun().steps_for(True), refused("evaluations")),
    "step before begin": (lambda: samplers.DDIM().step(zero_eps, X, 0), refused("begin")),
    "begin betas": (lambda: samplers.DDIM().begin([999, 500], BETAS), refused("alpha_bars", "betas")),
    # ---------------------------------------------------------------- samplers.sample
    "sample betas as alpha_bars": (lambda: samplers.sample(zero_eps, X, [999, 500], "ddim", alpha_bars=BETAS),
                                   refused("alpha_bars", "betas", "alpha_bars_from_betas")),
    "sample DDIM eta NaN": (lambda: samplers.sample(zero_eps, X, [999, 500], samplers.DDIM(eta=NAN), alpha_bars=AB),
                            refused("eta", "finite")),
    "sample NaN start": (lambda: samplers.sample(zero_eps, X_NAN, [999, 500], "ddim", alpha_bars=AB), refused("x_T", "NaN")),
    "sample inf start": (lambda: samplers.sample(zero_eps, X / 0, [999], "euler", alpha_bars=AB), refused("x_T", "infinite")),
    "sample flow model": (lambda: samplers.sample(FLOW_MLP, X, [999, 500], "ddim", alpha_bars=AB),
                          refused("flow-matching velocity", "flow.generate")),
    "sample as_denoiser(flow)": (lambda: samplers.sample(models.as_denoiser(FLOW_MLP), X, [999], "ddim", alpha_bars=AB),
                                 refused("flow-matching velocity", "flow.generate")),
    "sample empty timesteps": (lambda: samplers.sample(zero_eps, X, [], "ddim", alpha_bars=AB), refused("timesteps is empty")),
    "sample repeated timesteps": (lambda: samplers.sample(zero_eps, X, [5, 5], DDIM_STEP), refused("strictly decreasing")),
    "sample str timesteps": (lambda: samplers.sample(zero_eps, X, "999", DDIM_STEP), refused("timesteps")),
    "sample NaN timestep": (lambda: samplers.sample(zero_eps, X, [NAN], DDIM_STEP), refused("timesteps", "finite")),
    "sample fractional for a step fn": (lambda: samplers.sample(zero_eps, X, [5.5], DDIM_STEP), refused("integers")),
    "sample 2-D timesteps": (lambda: samplers.sample(zero_eps, X, torch.ones(2, 2), DDIM_STEP), refused("1-D")),
    "sample timestep 1000": (lambda: samplers.sample(zero_eps, X, [1000], "ddim", alpha_bars=AB), refused("0..999")),
    "sample step 42": (lambda: samplers.sample(zero_eps, X, [5], 42), refused("step must be")),
    "sample model None": (lambda: samplers.sample(None, X, [5], DDIM_STEP), refused("model must be")),
    "sample int seed": (lambda: samplers.sample(zero_eps, X, [999, 500], "ddpm", alpha_bars=AB, generator=7).x0,
                        equal(lambda: samplers.sample(zero_eps, X, [999, 500], "ddpm", alpha_bars=AB, generator=g(7)).x0)),
    "sample str seed": (lambda: samplers.sample(zero_eps, X, [5], DDIM_STEP, generator="7"), refused("generator")),
    "sample callback int": (lambda: samplers.sample(zero_eps, X, [5], DDIM_STEP, callback=5), refused("callback")),
    "sample table with a step fn": (lambda: samplers.sample(zero_eps, X, [5], DDIM_STEP, alpha_bars=AB),
                                    refused("alpha_bars and final_alpha_bar are for a Sampler")),
    "sample sampler without table": (lambda: samplers.sample(zero_eps, X, [5], "ddim"), refused("needs alpha_bars")),
    "sample NaN final": (lambda: samplers.sample(zero_eps, X, [5], "ddim", alpha_bars=AB, final_alpha_bar=NAN),
                         refused("final_alpha_bar")),
    "sample final below the last level": (lambda: samplers.sample(zero_eps, X, [999, 5], "euler", alpha_bars=AB,
                                                                  final_alpha_bar=0.5), refused("final_alpha_bar=0.5 is below")),
    "sample heun final": (lambda: samplers.sample(zero_eps, X, [5], "heun", alpha_bars=AB, final_alpha_bar=0.5),
                          refused("heun always lands on clean data")),
    "sample float64 x_T": (lambda: samplers.sample(zero_eps, X.double(), [999, 500], "ddim", alpha_bars=AB).x0,
                           accepted(lambda x: x.dtype == torch.float64)),
    "sample numpy timesteps": (lambda: samplers.sample(zero_eps, X, np.array([999, 500]), "ddim", alpha_bars=AB).x0,
                               equal(lambda: samplers.sample(zero_eps, X, [999, 500], "ddim", alpha_bars=AB).x0)),
    "sample bool timesteps": (lambda: samplers.sample(zero_eps, X, torch.tensor([True]), DDIM_STEP), refused("timesteps")),
    "sample euler fractional on a TimeMLP": (
        lambda: samplers.sample(models.as_denoiser(MLP), X, samplers.Euler().timesteps(1000, 7, "linspace"), "euler",
                                alpha_bars=AB).x0, accepted(lambda x: bool(torch.isfinite(x).all()))),
    # ---------------------------------------------------------------- models
    "seeded negative": (lambda: models.seeded(-1).__enter__(), refused("seed")),
    "timestep_embedding odd dim": (lambda: models.timestep_embedding(torch.tensor([1, 2]), 3), refused("even")),
    "timestep_embedding bool dim": (lambda: models.timestep_embedding(torch.tensor([1, 2]), True), refused("dim")),
    "timestep_embedding list t": (lambda: models.timestep_embedding([1, 2], 4), refused("t must be a 1-D tensor")),
    "TimeMLP data_dim 0": (lambda: models.TimeMLP(data_dim=0), refused("data_dim")),
    "TimeMLP float hidden": (lambda: models.TimeMLP(hidden_dim=2.5), refused("hidden_dim")),
    "time_mlp numpy seed": (lambda: models.time_mlp(seed=np.int64(1), hidden_dim=8, time_embed_dim=4).x_in.weight,
                            equal(lambda: models.time_mlp(seed=1, hidden_dim=8, time_embed_dim=4).x_in.weight)),
    "time_mlp str seed": (lambda: models.time_mlp(seed="0"), refused("seed")),
    "TimeMLP wrong width": (lambda: MLP(torch.randn(4, 3), 5), refused("sample must have shape (B, 2)")),
    "TimeMLP wrong timesteps": (lambda: MLP(X, torch.tensor([1, 2])), refused("timestep")),
    "TimeMLP int sample": (lambda: MLP(X_INT, 5), refused("sample", "floating-point")),
    "digits_unet conditional str": (lambda: models.digits_unet(conditional="yes"), refused("conditional")),
    "as_denoiser not a model": (lambda: models.as_denoiser(42), refused("model must be")),
    "as_denoiser fractional t": (lambda: models.as_denoiser(MLP)(X, 832.5),
                                 equal(lambda: MLP(X, torch.full((4,), 832.5)).detach())),
    "generate numpy shape": (lambda: models.generate(MLP, (np.int64(4), 2), AB, num_steps=2, generator=0).x0,
                             equal(lambda: models.generate(MLP, (4, 2), AB, num_steps=2, generator=g(0)).x0)),
    "generate int shape": (lambda: models.generate(MLP, 4, AB), refused("shape")),
    "generate zero in shape": (lambda: models.generate(MLP, (4, 0), AB), refused("shape")),
    "generate bool in shape": (lambda: models.generate(MLP, (4, True), AB), refused("shape")),
    "generate betas": (lambda: models.generate(MLP, (4, 2), BETAS), refused("alpha_bars", "betas")),
    "generate str seed": (lambda: models.generate(MLP, (4, 2), AB, generator="0"), refused("generator")),
    "generate eta for euler": (lambda: models.generate(MLP, (4, 2), AB, sampler="euler", eta=0.5), refused("eta")),
    "generate clip for heun": (lambda: models.generate(MLP, (4, 2), AB, sampler="heun", clip_sample=True),
                               refused("clip_sample")),
    "generate eta with a built sampler": (lambda: models.generate(MLP, (4, 2), AB, sampler=samplers.DDIM(), eta=0.5),
                                          refused("already built")),
    "generate prediction x0": (lambda: models.generate(MLP, (4, 2), AB, prediction_type="x0"), refused("prediction_type")),
    "generate device gpu": (lambda: models.generate(MLP, (4, 2), AB, device="gpu"), refused("device='gpu'")),
    "generate zero steps": (lambda: models.generate(MLP, (4, 2), AB, num_steps=0), refused("num_steps")),
    "generate a lambda": (lambda: models.generate(zero_eps, (4, 2), AB), refused("model must be")),
    "generate euler linspace": (lambda: models.generate(MLP, (4, 2), AB, sampler="euler", spacing="linspace", num_steps=7,
                                                        generator=0).x0, accepted(lambda x: bool(torch.isfinite(x).all()))),
    # ---------------------------------------------------------------- flow
    "interpolate numpy sigma": (lambda: flow.interpolate(X, 2 * X, np.float32(0.5)), close(1.5 * X)),
    "interpolate numpy int sigma": (lambda: flow.interpolate(X, 2 * X, np.int64(1)), close(2 * X)),
    "interpolate str sigma": (lambda: flow.interpolate(X, X, "0.5"), refused("sigma")),
    "interpolate bool sigma": (lambda: flow.interpolate(X, X, True), refused("sigma")),
    "x0_from_velocity NaN sigma": (lambda: flow.x0_from_velocity(X, X, NAN), refused("sigma=nan", "outside [0, 1]")),
    "eps_from_velocity sigma 2": (lambda: flow.eps_from_velocity(X, X, 2.0), refused("sigma=2.0")),
    "sigma_from_alpha_bar numpy": (lambda: flow.sigma_from_alpha_bar(np.float64(0.5)), close(torch.tensor(0.5))),
    "sigma_from_alpha_bar NaN": (lambda: flow.sigma_from_alpha_bar(NAN), refused("alpha_bar must lie in")),
    "sigma_from_alpha_bar str": (lambda: flow.sigma_from_alpha_bar("x"), refused("alpha_bar")),
    "alpha_bar_from_sigma numpy": (lambda: flow.alpha_bar_from_sigma(np.float32(0.5)), close(torch.tensor(0.5))),
    "alpha_bar_from_sigma 2": (lambda: flow.alpha_bar_from_sigma(2), refused("sigma=2.0")),
    "x_sigma_from_xt ab 1.5": (lambda: flow.x_sigma_from_xt(X, 1.5), refused("alpha_bar")),
    "velocity_from_v_diffusion NaN": (lambda: flow.velocity_from_v_diffusion(X, X, NAN), refused("alpha_bar")),
    "flow_matching_loss int seed": (lambda: flow.flow_matching_loss(FLOW_MLP, X, generator=4),
                                    equal(lambda: flow.flow_matching_loss(FLOW_MLP, X, generator=g(4)))),
    "flow_matching_loss str batch": (lambda: flow.flow_matching_loss(FLOW_MLP, "x"), refused("batch")),
    "inference_sigmas numpy": (lambda: flow.inference_sigmas(np.int64(4)), equal(lambda: flow.inference_sigmas(4))),
    "inference_sigmas 0": (lambda: flow.inference_sigmas(0), refused("num_steps")),
    "euler_step sigma_next 1.5": (lambda: flow.euler_step(X, X, 0.5, 1.5), refused("sigma_next")),
    "evaluations bool": (lambda: flow.evaluations(True), refused("num_steps")),
    "flow.generate numpy shape and seed": (lambda: flow.generate(FLOW_MLP, (np.int64(8), 2), 4, generator=0).x0,
                                           equal(lambda: flow.generate(FLOW_MLP, (8, 2), 4, generator=g(0)).x0)),
    "flow.generate NaN noise": (lambda: flow.generate(FLOW_MLP, None, 4, noise=X_NAN), refused("noise", "NaN")),
    "flow.generate int noise": (lambda: flow.generate(FLOW_MLP, None, 4, noise=X_INT), refused("noise")),
    "flow.generate float in shape": (lambda: flow.generate(FLOW_MLP, (8, 2.0), 4), refused("shape")),
    "flow.generate device gpu": (lambda: flow.generate(FLOW_MLP, (8, 2), 4, device="gpu"), refused("device")),
    "flow.generate model None": (lambda: flow.generate(None, (8, 2), 4), refused("model must be")),
    "flow.generate str seed": (lambda: flow.generate(FLOW_MLP, (8, 2), 4, generator="0"), refused("generator")),
    "flow.train dict config": (lambda: flow.train(config={"steps": 1}), refused("config", "TrainConfig(**your_dict)")),
    "flow.train str data": (lambda: flow.train("moons"), refused("x0")),
    "flow.reflow no model": (lambda: flow.reflow(None), refused("model")),
    "flow.reflow zero pairs": (lambda: flow.reflow(FLOW_MLP, num_pairs=0), refused("num_pairs")),
    # ---------------------------------------------------------------- mixtures
    "GaussianMixture NaN means": (lambda: mixtures.GaussianMixture(torch.tensor([[NAN, 0.0]]), torch.ones(1), torch.ones(1)),
                                  refused("means", "NaN")),
    "ring std 0": (lambda: mixtures.ring(std=0), refused("std")),
    "ring NaN radius": (lambda: mixtures.ring(radius=NAN), refused("radius")),
    "ring numpy modes": (lambda: mixtures.ring(np.int64(4)).means, close(mixtures.ring(4).means)),
    "sample int seed": (lambda: RING.sample(np.int64(5), generator=0), equal(lambda: RING.sample(5, g(0)))),
    "sample_with_labels = sample": (lambda: RING.sample_with_labels(50, g(1))[0], equal(lambda: RING.sample(50, g(1)))),
    "sample_with_labels labels": (lambda: RING.sample_with_labels(50, 1)[1],
                                  accepted(lambda k: k.dtype == torch.int64 and k.shape == (50,) and int(k.max()) < 8)),
    "sample str seed": (lambda: RING.sample(5, generator="a"), refused("generator")),
    "sample bool n": (lambda: RING.sample(True), refused("n must")),
    "noised NaN": (lambda: RING.noised(NAN), refused("alpha_bar must be in (0, 1]")),
    "noised numpy": (lambda: RING.noised(np.float32(0.25)).means, close(0.5 * RING.means)),
    "noised str": (lambda: RING.noised("a"), refused("alpha_bar")),
    "optimal_eps betas": (lambda: mixtures.optimal_eps(X, 5, BETAS, RING), refused("alpha_bars", "betas")),
    "optimal_eps not a mixture": (lambda: mixtures.optimal_eps(X, 5, AB, "ring"), refused("mixture")),
    "optimal_eps numpy t": (lambda: mixtures.optimal_eps(X, np.int64(5), AB, RING),
                            equal(lambda: mixtures.optimal_eps(X, 5, AB, RING))),
    "optimal_eps_at ab 1.5": (lambda: mixtures.optimal_eps_at(X, 1.5, RING), refused("alpha_bar")),
    "probability_flow_solution ab 1": (lambda: mixtures.probability_flow_solution(RING, X, 1.0), refused("alpha_bar_T")),
    "probability_flow_solution sigma_min 0": (lambda: mixtures.probability_flow_solution(RING, X, 0.5, sigma_min=0),
                                              refused("sigma_min")),
    "probability_flow_solution shape": (lambda: mixtures.probability_flow_solution(RING, torch.randn(4, 3), 0.5),
                                        refused("x_T must have shape (n, 2)")),
    "probability_flow_solution numpy": (lambda: mixtures.probability_flow_solution(RING, X, np.float32(0.5),
                                                                                    num_steps=np.int64(20)),
                                        accepted(lambda x: x.dtype == torch.float64 and bool(torch.isfinite(x).all()))),
    # ---------------------------------------------------------------- noise
    "as_generator numpy seed": (lambda: noise.randn((3,), noise.as_generator(np.int64(3))),
                                equal(lambda: torch.randn(3, generator=g(3)))),
    "as_generator negative": (lambda: noise.as_generator(-1), refused("generator=-1", "[0, 2**64)")),
    "as_generator bool": (lambda: noise.as_generator(True), refused("generator")),
    "as_generator float": (lambda: noise.as_generator(1.5), refused("generator")),
    "randn int seed": (lambda: noise.randn((2, 3), 0), equal(lambda: torch.randn(2, 3, generator=g(0)))),
    "randn int shape": (lambda: noise.randn(5), refused("shape")),
    "randn negative shape": (lambda: noise.randn((2, -1)), refused("shape")),
    "randn int dtype": (lambda: noise.randn((2, 2), dtype=torch.long), refused("dtype")),
    "randn device gpu": (lambda: noise.randn((2, 2), device="gpu"), refused("device")),
    "randn_like int": (lambda: noise.randn_like(X_INT), refused("like")),
    "given_or_drawn shape": (lambda: noise.given_or_drawn(torch.ones(3, 2), X), refused("shapes must match")),
    # ---------------------------------------------------------------- validation
    "check_number numpy": (lambda: validation.check_number(np.float32(0.5), "w"), accepted(lambda v: v == 0.5)),
    "check_number bool": (lambda: validation.check_number(True, "w"), refused("w must be a finite number")),
    "check_number NaN allowed": (lambda: validation.check_number(NAN, "w", finite=False), accepted(math.isnan)),
    "check_int float": (lambda: validation.check_int(3.0, "k"), refused("k must be an int")),
    "check_bool numpy": (lambda: validation.check_bool(np.True_, "flag"), accepted(lambda v: v is True)),
    "check_bool int": (lambda: validation.check_bool(1, "flag"), refused("flag must be True or False")),
    "check_alpha_bars betas": (lambda: validation.check_alpha_bars(BETAS), refused("alpha_bars", "look like betas")),
    "check_alpha_bars reversed": (lambda: validation.check_alpha_bars(AB.flip(0)), refused("reverse order")),
    "check_alpha_bars zero": (lambda: validation.check_alpha_bars(torch.tensor([0.5, 0.0])), refused("outside (0, 1]")),
    "check_alpha_bars inference-mode table": (lambda: validation.check_alpha_bars(_inference_table()), accepted()),
    "check_alpha_bars changed in place after a check": (lambda: validation.check_alpha_bars(_spoiled_after_check()),
                                                        refused("alpha_bars", "outside (0, 1]")),
    "check_betas alpha_bars": (lambda: validation.check_betas(AB), refused("betas", "alpha_bars")),
    "check_device tpu": (lambda: validation.check_device("tpu"), refused("device='tpu'")),
    "check_device cpu": (lambda: validation.check_device("cpu"), accepted(lambda d: d.type == "cpu")),
    "check_schedule_table inf": (lambda: validation.check_schedule_table(torch.tensor([1.0, math.inf])),
                                 refused("alpha_bars", "infinite")),
}

if not torch.cuda.is_available():
    PROBES["generate device cuda without one"] = (lambda: models.generate(MLP, (4, 2), AB, device="cuda"),
                                                 refused("device='cuda'", "no CUDA device"))


@pytest.mark.parametrize("probe", list(PROBES))
def test_probe(probe):
    call, expect = PROBES[probe]
    expect(call)
