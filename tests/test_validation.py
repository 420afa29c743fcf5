"""Bad input at every public entry point raises CourseInputError naming the problem and the fix."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from course_lib import metrics, mixtures, posterior, samplers, schedules, validation
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

AB = schedules.NoiseSchedule("linear").alpha_bars
BETAS = schedules.NoiseSchedule("linear").betas
X = torch.randn(4, 2)
X_INT = torch.ones(4, 2, dtype=torch.long)
RING = mixtures.ring()
DDIM = functools.partial(samplers.ddim_step, alpha_bars=AB)

# Fragments: what is wrong, and what to do about it.
OUT_OF_RANGE = ("out of range", "0-based", "0..999")
DTYPE = ("floating-point tensor", "torch.int64", ".float()")
SHAPES = ("shapes must match", "Pass tensors of one shape")
TABLE = ("1-D floating-point tensor", "NoiseSchedule('linear')")

CASES = {
    # schedules
    "linear_betas num_steps": (lambda: schedules.linear_betas(0), ("num_steps must be a positive int", "got 0")),
    "linear_betas range": (lambda: schedules.linear_betas(10, 0.5, 0.1), ("0 < beta_start <= beta_end < 1",
                                                                         "beta_start=0.5")),
    "scaled_linear_betas num_steps": (lambda: schedules.scaled_linear_betas(-3), ("positive int", "-3")),
    "cosine_betas num_steps": (lambda: schedules.cosine_betas(2.5), ("positive int", "2.5")),
    "cosine_alpha_bar list": (lambda: schedules.cosine_alpha_bar([0.1]), ("torch.Tensor", "torch.as_tensor")),
    "alpha_bars_from_betas dtype": (lambda: schedules.alpha_bars_from_betas(torch.tensor([1, 2])),
                                    TABLE + ("torch.int64", "betas")),
    "alpha_bars_from_betas 2-D": (lambda: schedules.alpha_bars_from_betas(torch.rand(3, 3)), TABLE + ("(3, 3)",)),
    "snr list": (lambda: schedules.snr([0.5]), ("alpha_bars must be a torch.Tensor", "torch.as_tensor")),
    "NoiseSchedule name": (lambda: schedules.NoiseSchedule("sigmoid"),
                           ("schedule name='sigmoid' is not known", "'linear', 'scaled_linear', 'cosine'")),
    "NoiseSchedule num_steps": (lambda: schedules.NoiseSchedule(num_steps=0), ("num_steps must be a positive int",)),
    "NoiseSchedule cosine range": (lambda: schedules.NoiseSchedule("cosine", beta_start=0.1),
                                   ("cosine schedule has no beta_start", "leave them as None")),
    "NoiseSchedule beta range": (lambda: schedules.NoiseSchedule("linear", beta_start=0.3, beta_end=0.1),
                                 ("0 < beta_start <= beta_end < 1",)),
    "gather t": (lambda: schedules.gather(AB, torch.tensor(1000), X), ("t=1000 is out of range", "-1..999")),
    "gather float t": (lambda: schedules.gather(AB, torch.tensor(5.0), X), ("integer timesteps", "t.long()")),
    "q_sample t": (lambda: schedules.q_sample(X, 1000, AB), ("t=1000",) + OUT_OF_RANGE),
    "q_sample t -1": (lambda: schedules.q_sample(X, -1, AB), ("t=-1",) + OUT_OF_RANGE),
    "q_sample t list": (lambda: schedules.q_sample(X, [1, 2, 3, 4], AB), ("int or an integer tensor", "torch.tensor")),
    "q_sample t float": (lambda: schedules.q_sample(X, 1.5, AB), ("int or an integer tensor", "got float")),
    "q_sample t per-sample": (lambda: schedules.q_sample(X, torch.tensor([1, 2]), AB),
                              ("one per sample, shape (4,)", "got shape (2,)")),
    "q_sample dtype": (lambda: schedules.q_sample(X_INT, 5, AB), ("x0 must be a",) + DTYPE),
    "q_sample noise shape": (lambda: schedules.q_sample(X, 5, AB, noise=torch.randn(3, 2)),
                             SHAPES + ("x0 (4, 2)", "noise (3, 2)")),
    "q_sample table": (lambda: schedules.q_sample(X, 1, [0.5, 0.4]), TABLE + ("alpha_bars", "got a list")),
    "q_step t": (lambda: schedules.q_step(X, 1000, BETAS), OUT_OF_RANGE),
    "q_step dtype": (lambda: schedules.q_step(X_INT, 3, BETAS), ("x_prev must be a",) + DTYPE),
    "q_step table": (lambda: schedules.q_step(X, 1, torch.ones(3, 3)), TABLE + ("betas",)),
    "q_mean_variance t": (lambda: schedules.q_mean_variance(X, 1000, AB), OUT_OF_RANGE),
    "q_mean_variance dtype": (lambda: schedules.q_mean_variance(X_INT, 10, AB), DTYPE),
    # posterior
    "q_posterior shape": (lambda: posterior.q_posterior(X, torch.randn(3, 2), 5, AB), SHAPES),
    "q_posterior t": (lambda: posterior.q_posterior(X, X, 1000, AB), OUT_OF_RANGE),
    "q_posterior t_prev order": (lambda: posterior.q_posterior(X, X, 5, AB, t_prev=5),
                                 ("t_prev must be earlier than t", "t=5 and t_prev=5")),
    "q_posterior t_prev range": (lambda: posterior.q_posterior(X, X, 5, AB, t_prev=-2),
                                 ("t_prev=-2 is out of range", "-1..999")),
    "q_posterior dtype": (lambda: posterior.q_posterior(X_INT, X, 5, AB), ("x0 must be a",) + DTYPE),
    "posterior_coefficients dtype": (lambda: posterior.posterior_coefficients(torch.tensor(1), torch.tensor(1)),
                                     ("alpha_bar_t must be a floating-point tensor",)),
    "x0_from_eps shape": (lambda: posterior.x0_from_eps(X, torch.randn(3, 2), AB[5]), SHAPES + ("eps (3, 2)",)),
    "x0_from_eps dtype": (lambda: posterior.x0_from_eps(X_INT, X, AB[5]), ("xt must be a",) + DTYPE),
    "x0_from_eps alpha_bar_t": (lambda: posterior.x0_from_eps(X, X, AB[:4]),
                                ("alpha_bar_t of shape (4,)", "schedules.gather(alpha_bars, t, x)")),
    "eps_from_x0 shape": (lambda: posterior.eps_from_x0(X, torch.randn(4, 3), AB[5]), SHAPES),
    "v_from_x0_eps shape": (lambda: posterior.v_from_x0_eps(X, torch.randn(4, 3), AB[5]), SHAPES),
    "x0_from_v dtype": (lambda: posterior.x0_from_v(X, X_INT, AB[5]), ("v must be a",) + DTYPE),
    "eps_from_v alpha_bar_t": (lambda: posterior.eps_from_v(X, X, torch.rand(3, 1)), ("(3, 1)", "(B, 1, ...)")),
    "predict_x0_eps prediction_type": (lambda: posterior.predict_x0_eps(X, X, AB[5], "score"),
                                       ("prediction_type='score' is not known", "'epsilon', 'sample', 'v_prediction'")),
    "predict_x0_eps dtype": (lambda: posterior.predict_x0_eps(X_INT, X, AB[5]), ("model_output must be a",) + DTYPE),
    "predict_x0_eps shape": (lambda: posterior.predict_x0_eps(torch.randn(4, 3), X, AB[5]), SHAPES),
    # samplers
    "inference_timesteps spacing": (lambda: samplers.inference_timesteps(1000, 10, "uniform"),
                                    ("spacing='uniform' is not known", "'leading', 'trailing', 'linspace'")),
    "inference_timesteps too many": (lambda: samplers.inference_timesteps(1000, 1001),
                                     ("between 1 and num_train_steps=1000", "got 1001")),
    "inference_timesteps num_steps": (lambda: samplers.inference_timesteps(1000, 10.5), ("positive int", "10.5")),
    "inference_timesteps offset": (lambda: samplers.inference_timesteps(1000, 10, offset=-1),
                                   ("offset=-1 pushes the timesteps out of 0..999", "between 0 and 99")),
    "inference_timesteps offset type": (lambda: samplers.inference_timesteps(1000, 10, offset=0.5),
                                        ("offset must be an int", "steps_offset")),
    "previous_timestep missing": (lambda: samplers.previous_timestep(torch.tensor([9, 5, 1]), 4),
                                  ("t=4 is not one of the timesteps", "[9, 5, 1]")),
    "ddpm_step variance_type": (lambda: samplers.ddpm_step(X, X, 5, 4, AB, variance_type="learned"),
                                ("variance_type='learned' is not known", "'fixed_small', 'fixed_large'")),
    "ddpm_step prediction_type": (lambda: samplers.ddpm_step(X, X, 5, 4, AB, prediction_type="x0"),
                                  ("prediction_type='x0' is not known", "'sample'")),
    "ddpm_step t": (lambda: samplers.ddpm_step(X, X, 1000, 4, AB), OUT_OF_RANGE),
    "ddpm_step t_prev": (lambda: samplers.ddpm_step(X, X, 5, 7, AB), ("t_prev must be earlier than t",)),
    "ddpm_step shape": (lambda: samplers.ddpm_step(torch.randn(4, 3), X, 5, 4, AB), SHAPES + ("model_output (4, 3)",)),
    "ddpm_step dtype": (lambda: samplers.ddpm_step(X_INT, X, 5, 4, AB), ("model_output must be a",) + DTYPE),
    "ddpm_step noise shape": (lambda: samplers.ddpm_step(X, X, 5, 4, AB, noise=torch.randn(3, 2)), SHAPES),
    "ddpm_step noise dtype": (lambda: samplers.ddpm_step(X, X, 5, 4, AB, noise=X_INT), ("noise must be a",) + DTYPE),
    "ddpm_step table": (lambda: samplers.ddpm_step(X, X, 5, 4, AB.long()), TABLE),
    "ddim_step eta": (lambda: samplers.ddim_step(X, X, 5, 4, AB, eta=-1), ("eta must be >= 0", "0 is deterministic")),
    "ddim_step t_prev": (lambda: samplers.ddim_step(X, X, 5, -5, AB), ("t_prev=-5 is out of range", "-1..999")),
    "ddim_step final_alpha_bar": (lambda: samplers.ddim_step(X, X, 5, -1, AB, final_alpha_bar=2.0),
                                  ("final_alpha_bar must be in (0, 1]", "set_alpha_to_one")),
    "ddim_step prediction_type": (lambda: samplers.ddim_step(X, X, 5, 4, AB, prediction_type="eps"),
                                  ("prediction_type='eps' is not known",)),
    "sample dtype": (lambda: samplers.sample(lambda x, t: x, X_INT, [5, 1], DDIM), ("x_T must be a",) + DTYPE),
    "sample order": (lambda: samplers.sample(lambda x, t: x, X, [1, 5], DDIM),
                     ("strictly decreasing", "samplers.inference_timesteps")),
    "sample model shape": (lambda: samplers.sample(lambda x, t: x[:2], X, [5, 1], DDIM), SHAPES),
    "sample t": (lambda: samplers.sample(lambda x, t: x, X, [1000, 1], DDIM), OUT_OF_RANGE),
    # mixtures
    "GaussianMixture shapes": (lambda: mixtures.GaussianMixture(torch.zeros(3, 2), torch.ones(2), torch.ones(3) / 3),
                               ("need means (K, D), stds (K,), weights (K,)", "(2,)")),
    "GaussianMixture dtype": (lambda: mixtures.GaussianMixture(torch.zeros(3, 2, dtype=torch.long), torch.ones(3),
                                                               torch.ones(3) / 3), ("means must be a",) + DTYPE),
    "GaussianMixture list": (lambda: mixtures.GaussianMixture([[0.0, 0.0]], [1.0], [1.0]),
                             ("means must be a torch.Tensor", "torch.as_tensor")),
    "GaussianMixture weights": (lambda: mixtures.GaussianMixture(torch.zeros(3, 2), torch.ones(3), torch.ones(3)),
                                ("weights >= 0 summing to 1", "weights / weights.sum()")),
    "GaussianMixture stds": (lambda: mixtures.GaussianMixture(torch.zeros(1, 2), torch.zeros(1), torch.ones(1)),
                             ("stds must be > 0",)),
    "GaussianMixture.sample n": (lambda: RING.sample(0), ("n must be a positive int",)),
    "GaussianMixture.log_prob shape": (lambda: RING.log_prob(torch.randn(4, 3)),
                                       ("x must have shape (n, 2)", "x.reshape(-1, 2)")),
    "GaussianMixture.log_prob dtype": (lambda: RING.log_prob(X_INT), ("x must be a",) + DTYPE),
    "GaussianMixture.score shape": (lambda: RING.score(torch.randn(4)), ("x must have shape (n, 2)", "got (4,)")),
    "GaussianMixture.responsibilities shape": (lambda: RING.responsibilities(torch.randn(2, 2, 2)), ("(n, 2)",)),
    "GaussianMixture.noised": (lambda: RING.noised(1.5), ("alpha_bar must be in (0, 1]", "float(alpha_bars[t])")),
    "optimal_eps t": (lambda: mixtures.optimal_eps(X, 1000, AB, RING), OUT_OF_RANGE),
    "optimal_eps shape": (lambda: mixtures.optimal_eps(torch.randn(4, 3), 5, AB, RING), ("xt must have shape (n, 2)",)),
    "optimal_eps dtype": (lambda: mixtures.optimal_eps(X_INT, 5, AB, RING), ("xt must be a",) + DTYPE),
    "optimal_eps table": (lambda: mixtures.optimal_eps(X, 5, AB[None], RING), TABLE),
    "ring num_modes": (lambda: mixtures.ring(0), ("num_modes must be a positive int",)),
    # metrics
    "energy_distance shape": (lambda: metrics.energy_distance(X, torch.randn(4, 3)),
                              ("same D", "(4, 2) and (4, 3)")),
    "energy_distance 1-D": (lambda: metrics.energy_distance(torch.randn(5), torch.randn(5)), ("need x (n, D)",)),
    "energy_distance size": (lambda: metrics.energy_distance(torch.randn(1, 2), X), ("at least 2 points",)),
    "energy_distance dtype": (lambda: metrics.energy_distance(X_INT, X), ("x must be a",) + DTYPE),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_course_input_error(case):
    call, fragments = CASES[case]
    with pytest.raises(CourseInputError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{case}: {fragment!r} not in {message!r}"


def test_course_input_error_is_a_value_error():
    assert issubclass(CourseInputError, ValueError)


def test_validation_helpers_accept_good_input():
    assert validation.check_choice("a", ["a", "b"], "x") == "a"
    assert validation.check_float_tensor(X, "x") is X
    validation.check_same_shape(a=X, b=X)
    assert validation.check_timestep(np.int64(3), 10).item() == 3
    assert validation.check_timestep(-1, 10, allow_data=True).item() == -1
    assert validation.check_timestep(torch.tensor([0, 9], dtype=torch.int32), 10).dtype == torch.int64
    validation.check_batch_timesteps(torch.tensor([1, 2, 3, 4]), X)
    validation.check_batch_timesteps(torch.tensor(3), X)
    assert validation.check_positive_int(np.int32(4), "n") == 4
    assert validation.check_schedule_table(AB) is AB
    assert validation.check_alpha_bar_t(0.5, X).dtype == X.dtype
    ab = schedules.gather(AB, torch.tensor([1, 2, 3, 4]), torch.zeros(4, 3, 5, 5))
    assert ab.shape == (4, 1, 1, 1)
    assert validation.check_alpha_bar_t(ab, torch.zeros(4, 3, 5, 5)) is ab
    # gather takes an int too, and -1 means clean data.
    assert schedules.gather(AB, 5, X).item() == AB[5].item()
    assert schedules.gather(AB, -1, X).item() == 1.0


@pytest.mark.parametrize("bad", [True, "3", None, 2.0])
def test_check_timestep_rejects_non_integers(bad):
    with pytest.raises(CourseInputError, match="must be an int or an integer tensor"):
        validation.check_timestep(bad, 10)


def test_check_timestep_rejects_bool_and_float_tensors():
    for bad in (torch.tensor([True]), torch.tensor([1.0])):
        with pytest.raises(CourseInputError, match="must hold integer timesteps"):
            validation.check_timestep(bad, 10)
