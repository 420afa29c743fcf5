"""course_lib.guidance: the two CFG conventions, score and eps, Bayes' rule on a Gaussian mixture whose
conditional and unconditional scores are exact, and the batched digits CFG sampler against separate
model calls (our loop and diffusers' DDIMScheduler)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from conftest import diffusers_scheduler

from course_lib import guidance, metrics, mixtures, models, recipes, samplers, schedules
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

AB = models.SCHEDULE.alpha_bars


# ----------------------------------------------------------------------------------------------
# (a) the two conventions
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("s", [0.0, 0.5, 1.0, 4.0, 6.5, -0.5])
def test_ho_and_diffusers_conventions_agree_with_g_equal_s_plus_1(s, worst):
    gen = torch.Generator().manual_seed(0)
    eps_u, eps_c = torch.randn(2, 4, 1, 8, 8, generator=gen, dtype=torch.float64)
    ho = guidance.cfg_combine_ho(eps_u, eps_c, s)
    diffusers_form = guidance.cfg_combine(eps_u, eps_c, s + 1)
    # written out by hand, the seed's eq. (2) and diffusers' line
    torch.testing.assert_close(ho, eps_c + s * (eps_c - eps_u), atol=1e-12, rtol=0)
    torch.testing.assert_close(diffusers_form, eps_u + (s + 1) * (eps_c - eps_u), atol=1e-12, rtol=0)
    worst("guidance: Ho (s) vs diffusers (g = s + 1)", (ho - diffusers_form).abs().max().item())
    torch.testing.assert_close(ho, diffusers_form, atol=1e-12, rtol=0)


def test_no_guidance_is_g_1_or_s_0_and_g_0_is_unconditional():
    gen = torch.Generator().manual_seed(1)
    eps_u, eps_c = torch.randn(2, 3, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(guidance.cfg_combine(eps_u, eps_c, 1.0), eps_c, atol=1e-15, rtol=0)
    torch.testing.assert_close(guidance.cfg_combine_ho(eps_u, eps_c, 0.0), eps_c, atol=0, rtol=0)
    torch.testing.assert_close(guidance.cfg_combine(eps_u, eps_c, 0.0), eps_u, atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------
# (b), (c) score and eps; Bayes on a Gaussian mixture
# ----------------------------------------------------------------------------------------------

def _mixture() -> mixtures.GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]], dtype=torch.float64)
    return mixtures.GaussianMixture(means, torch.tensor([0.3, 0.5, 0.4], dtype=torch.float64),
                                    torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))


def _component(mixture: mixtures.GaussianMixture, k: int) -> mixtures.GaussianMixture:
    """The mixture's k-th Gaussian alone: the law of x0 given the class c = k."""
    return mixtures.GaussianMixture(mixture.means[k: k + 1], mixture.stds[k: k + 1],
                                    torch.ones(1, dtype=mixture.weights.dtype))


def _points(n: int = 64, seed: int = 0) -> torch.Tensor:
    return 2.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("t", [10, 300, 700, 999])
def test_score_from_eps_is_the_score_of_a_standard_gaussian(t):
    # x0 ~ N(0, I) gives x_t ~ N(0, I): score -x, and E[eps | x_t] = Cov(eps, x_t) x_t = sqrt(1 - ab) x_t
    xt = _points()
    ab = float(AB[t])
    eps_star = math.sqrt(1 - ab) * xt
    torch.testing.assert_close(guidance.score_from_eps(eps_star, ab), -xt, atol=1e-12, rtol=0)
    torch.testing.assert_close(guidance.eps_from_score(-xt, ab), eps_star, atol=1e-12, rtol=0)


@pytest.mark.parametrize("t", [50, 400, 900])
def test_score_from_eps_of_the_mixtures_exact_eps_is_its_autograd_score(t, worst):
    mixture = _mixture()
    ab = float(AB[t])
    xt = _points().requires_grad_(True)
    log_p = mixture.noised(ab).log_prob(xt).sum()
    (autograd_score,) = torch.autograd.grad(log_p, xt)
    eps_star = mixtures.optimal_eps(xt.detach(), t, AB.double(), mixture)
    got = guidance.score_from_eps(eps_star, ab)
    worst("guidance.score_from_eps(eps*) vs autograd score", (got - autograd_score).abs().max().item())
    torch.testing.assert_close(got, autograd_score, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(guidance.eps_from_score(got, ab), eps_star, atol=1e-12, rtol=0)
    # one value per sample, shaped (B, 1) as schedules.gather gives it
    per_sample = torch.full((len(xt), 1), ab, dtype=torch.float64)
    torch.testing.assert_close(guidance.score_from_eps(eps_star, per_sample), got, atol=0, rtol=0)


@pytest.mark.parametrize("t", [20, 300, 800])
def test_x0_from_score_is_the_posterior_mean_of_a_gaussian(t, worst):
    """Tweedie against Gaussian conjugacy: x0 ~ N(mu, v I), x_t = sqrt(ab) x0 + sqrt(1 - ab) eps gives
    E[x0 | x_t] = mu + sqrt(ab) v / (ab v + 1 - ab) * (x_t - sqrt(ab) mu), score -(x_t - sqrt(ab) mu) / (ab v + 1 - ab)."""
    ab = float(schedules.NoiseSchedule("linear", 1000).alpha_bars[t])
    mu, v = torch.tensor([1.5, -0.5], dtype=torch.float64), 0.3**2
    xt = torch.randn(256, 2, generator=torch.Generator().manual_seed(t), dtype=torch.float64) * 2
    total = ab * v + 1 - ab
    score = -(xt - ab**0.5 * mu) / total
    posterior_mean = mu + ab**0.5 * v / total * (xt - ab**0.5 * mu)
    got = guidance.x0_from_score(score, xt, ab)
    worst("guidance.x0_from_score vs the Gaussian posterior mean", (got - posterior_mean).abs().max().item())
    torch.testing.assert_close(got, posterior_mean, atol=1e-10, rtol=1e-10)
    per_sample = torch.full((256, 1), ab, dtype=torch.float64)  # one alpha_bar per row gives the same
    torch.testing.assert_close(guidance.x0_from_score(score, xt, per_sample), got, atol=0, rtol=0)


@pytest.mark.parametrize("t", [30, 250, 600, 950])
@pytest.mark.parametrize("k", [0, 2])
def test_bayes_conditional_score_is_unconditional_plus_classifier_gradient(t, k, worst):
    mixture = _mixture()
    ab = float(AB[t])
    xt = _points(seed=k).requires_grad_(True)
    # grad log p_t(c = k | x_t), by autograd through the noised mixture's responsibilities
    (grad_log_p_c,) = torch.autograd.grad(torch.log(mixture.noised(ab).responsibilities(xt)[:, k]).sum(), xt)
    xt = xt.detach()
    uncond_score = mixture.noised(ab).score(xt)
    cond_score = _component(mixture, k).noised(ab).score(xt)  # exact: the component is one Gaussian
    # (6.2) in score units
    torch.testing.assert_close(cond_score, uncond_score + grad_log_p_c, atol=1e-9, rtol=1e-9)
    # ... and in eps units, with the sqrt(1 - ab) factor seed 000 §4.2 leaves out
    eps_u = mixtures.optimal_eps(xt, t, AB.double(), mixture)
    eps_c = mixtures.optimal_eps(xt, t, AB.double(), _component(mixture, k))
    guided = guidance.classifier_guided_eps(eps_u, grad_log_p_c, ab, scale=1.0)
    worst("guidance.classifier_guided_eps(scale 1) vs exact conditional eps*", (guided - eps_c).abs().max().item())
    torch.testing.assert_close(guided, eps_c, atol=1e-9, rtol=1e-9)
    # without the factor (the seed's eps_c = eps_u + grad log p(c|x)) it is wrong
    assert (eps_u + grad_log_p_c - eps_c).abs().max() > 1e-2
    # scale s gives the score of p_t(x) p_t(c|x)^s at this noise level: unconditional score plus s times the classifier's
    s = 3.0
    torch.testing.assert_close(guidance.score_from_eps(guidance.classifier_guided_eps(eps_u, grad_log_p_c, ab, s), ab),
                               uncond_score + s * grad_log_p_c, atol=1e-9, rtol=1e-9)
    # CFG with the exact eps's: g = 1 is the conditional eps, and CFG at g is classifier guidance at scale g
    torch.testing.assert_close(guidance.cfg_combine(eps_u, eps_c, 1.0), eps_c, atol=1e-12, rtol=0)
    for g in (0.0, 2.0, 7.5):
        torch.testing.assert_close(guidance.cfg_combine(eps_u, eps_c, g),
                                   guidance.classifier_guided_eps(eps_u, grad_log_p_c, ab, g), atol=1e-9, rtol=1e-9)


def test_tilted_moments_at_g_0_and_1_are_the_mixtures_and_the_components_closed_forms(worst):
    mixture = _mixture()
    w, m, s = mixture.weights, mixture.means, mixture.stds
    mean0, std0 = guidance.tilted_moments(mixture, 1, 0.0, step=0.01)
    want_mean = (w[:, None] * m).sum(0)
    want_std = ((w[:, None] * (s[:, None] ** 2 + m**2)).sum(0) - want_mean**2).sqrt()  # law of total variance
    worst("guidance.tilted_moments(g = 0) vs the mixture's closed-form moments",
          max((mean0 - want_mean).abs().max().item(), (std0 - want_std).abs().max().item()))
    torch.testing.assert_close(mean0, want_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(std0, want_std, atol=1e-6, rtol=0)
    for k in range(3):  # g = 1: p(x) p(c | x) = w_c N_c(x), the component alone
        mean1, std1 = guidance.tilted_moments(mixture, k, 1.0, step=0.01)
        torch.testing.assert_close(mean1, m[k], atol=1e-6, rtol=0)
        torch.testing.assert_close(std1, torch.full((2,), float(s[k]), dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("g", [0.5, 2.0, 4.0])
def test_tilted_moments_match_self_normalised_importance_sampling_from_the_mixture(g, worst):
    # an independent estimate: E_tilt[f] = E_p[f(x) r_c(x)^g] / E_p[r_c(x)^g], x drawn from the mixture itself
    mixture = _mixture()
    x = mixture.sample(400_000, generator=torch.Generator().manual_seed(3))
    weight = mixture.responsibilities(x)[:, 2] ** g
    weight = weight / weight.sum()
    mc_mean = (weight[:, None] * x).sum(0)
    mc_std = (weight[:, None] * (x - mc_mean) ** 2).sum(0).sqrt()
    mean, std = guidance.tilted_moments(mixture, 2, g, step=0.01)
    worst("guidance.tilted_moments vs importance sampling (400k draws)",
          max((mean - mc_mean).abs().max().item(), (std - mc_std).abs().max().item()))
    torch.testing.assert_close(mean, mc_mean, atol=0.02, rtol=0)
    torch.testing.assert_close(std, mc_std, atol=0.02, rtol=0)


def test_tilted_moments_of_well_separated_modes_stay_the_component_at_any_g():
    # nb 06's ring: p(c | x) ~ 1 over the whole Gaussian c, so the tilt leaves it as it is
    ring = mixtures.ring(8, radius=2.0, std=0.15)
    for g in (3.0, 7.5):
        mean, std = guidance.tilted_moments(ring, 0, g)
        torch.testing.assert_close(mean, torch.tensor([2.0, 0.0], dtype=torch.float64), atol=1e-4, rtol=0)
        torch.testing.assert_close(std, torch.full((2,), 0.15, dtype=torch.float64), atol=1e-4, rtol=0)


def test_tilted_moments_refuse_bad_input():
    mixture = _mixture()
    with pytest.raises(CourseInputError, match="component must be an int"):
        guidance.tilted_moments(mixture, 3, 2.0)
    with pytest.raises(CourseInputError, match="component must be an int"):
        guidance.tilted_moments(mixture, True, 2.0)
    with pytest.raises(CourseInputError, match=">= 0"):
        guidance.tilted_moments(mixture, 0, -1.0)
    with pytest.raises(CourseInputError, match="finite number"):
        guidance.tilted_moments(mixture, 0, float("nan"))
    with pytest.raises(CourseInputError, match="2-D"):
        guidance.tilted_moments(mixtures.GaussianMixture(torch.zeros(2, 3), torch.ones(2), torch.full((2,), 0.5)), 0, 1.0)
    with pytest.raises(CourseInputError, match="grid spacing"):
        guidance.tilted_moments(mixture, 0, 1.0, step=0.0)
    with pytest.raises(CourseInputError, match="weight 0"):
        guidance.tilted_moments(mixtures.GaussianMixture(torch.zeros(2, 2), torch.ones(2), torch.tensor([1.0, 0.0])), 1, 1.0)


# ----------------------------------------------------------------------------------------------
# (d) the batched digits sampler against separate conditional and unconditional calls
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unet():
    return models.digits_unet(seed=3, conditional=True).eval()


LABELS = torch.tensor([0, 3, 7, 9, 3])


def _separate_calls(model, labels, g):
    """eps_u + g (eps_c - eps_u) with the unconditional and the conditional model called one after the other."""
    uncond = models.as_denoiser(model, class_labels=models.NULL_CLASS)
    cond = models.as_denoiser(model, class_labels=labels)
    return lambda xt, t: uncond(xt, t) + g * (cond(xt, t) - uncond(xt, t))


@pytest.mark.parametrize("g", [2.0, 5.0])
def test_batched_cfg_denoiser_equals_separate_calls(unet, g, worst):
    batched = guidance.cfg_digits_denoiser(unet, LABELS, g)
    separate = _separate_calls(unet, LABELS, g)
    x = torch.randn(len(LABELS), 1, 16, 16, generator=torch.Generator().manual_seed(0))
    for t in (999, 500, 20):
        diff = (batched(x, t) - separate(x, t)).abs().max().item()
        worst("guidance.cfg_digits_denoiser (batched) vs separate calls", diff)
        # a batch of 2B rows and two batches of B take different kernel paths (oneDNN picks by shape and CPU):
        # float32 round-off ~1e-6 per UNet output, amplified by CFG's (1 + 2g); measured up to 5e-6 on AVX-512
        assert diff <= 2e-6 * (1 + 2 * g)


@pytest.mark.parametrize("clip, use_clipped", [(False, False), (True, False), (True, True)])
def test_cfg_digits_sampler_equals_our_loop_and_diffusers_with_separate_calls(unet, clip, use_clipped, worst):
    g, steps = 3.0, 4
    got = guidance.generate_digits_cfg(unet, LABELS, g, num_steps=steps, generator=torch.Generator().manual_seed(5),
                                       clip_sample=clip, use_clipped_model_output=use_clipped)
    assert got.shape == (len(LABELS), 1, 16, 16) and got.abs().max() <= 1
    x_T = torch.randn(len(LABELS), 1, 16, 16, generator=torch.Generator().manual_seed(5))
    separate = _separate_calls(unet, LABELS, g)
    # our one sampling loop with the two calls made apart
    step = functools.partial(samplers.ddim_step, alpha_bars=AB, eta=0.0, clip_sample=clip,
                             use_clipped_model_output=use_clipped)
    ours = samplers.sample(separate, x_T, samplers.inference_timesteps(1000, steps, "trailing"), step).x0.clamp(-1, 1)
    worst("guidance.generate_digits_cfg vs samplers.sample with separate calls", (got - ours).abs().max().item())
    # batched vs separate UNet calls differ by float32 round-off (above), and the first trailing step's
    # x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab) multiplies eps's by 1 / sqrt(ab_999) ~ 160: measured 2e-4 on AVX-512
    torch.testing.assert_close(got, ours, atol=1e-3, rtol=0)
    # diffusers' DDIMScheduler (trailing spacing, alpha_bar 1 at the end), same table
    sched = diffusers_scheduler("ddim", AB, num_train_timesteps=1000, timestep_spacing="trailing", clip_sample=clip,
                                set_alpha_to_one=True)
    sched.set_timesteps(steps)
    x = x_T.clone()
    for t in sched.timesteps:
        x = sched.step(separate(x, int(t)), t, x, eta=0.0, use_clipped_model_output=use_clipped).prev_sample
    # the same separate calls in both loops: ours equals the scheduler's (and got equals ours, above)
    worst("samplers.sample vs diffusers DDIMScheduler loop (separate CFG calls)", (ours - x.clamp(-1, 1)).abs().max().item())
    torch.testing.assert_close(ours, x.clamp(-1, 1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("clip", [False, True])
def test_g_1_is_the_conditional_model_and_g_0_the_null_class(unet, clip):
    for g, condition in ((1.0, LABELS), (0.0, models.NULL_CLASS)):
        got = guidance.generate_digits_cfg(unet, LABELS, g, generator=torch.Generator().manual_seed(2), num_steps=3,
                                           clip_sample=clip)
        ref = models.generate(unet, (len(LABELS), 1, 16, 16), AB, generator=torch.Generator().manual_seed(2),
                              class_labels=condition, num_steps=3, clip_sample=clip).x0
        assert torch.equal(got, ref.clamp(-1, 1))


def test_sweep_rows_and_within_class_diversity(unet, monkeypatch):
    # a stand-in classifier (the real one trains for seconds): every 4th image wrong, confidences 0, 0.1, ...
    def fake_classify(images):
        n = len(images)
        predicted = torch.arange(n) % models.NUM_DIGIT_CLASSES
        predicted[::4] = (predicted[::4] + 1) % models.NUM_DIGIT_CLASSES
        return predicted, (torch.arange(n) % 10).float() / 10

    monkeypatch.setattr(metrics, "classify_digits", fake_classify)
    rows = guidance.digits_guidance_sweep(unet, [0.0, 2.0], per_class=2, num_steps=2, seed=0)
    assert [r["guidance_scale"] for r in rows] == [0.0, 2.0]
    for r in rows:
        assert set(r) == {"guidance_scale", "accuracy", "confident_share", "diversity"}
        assert r["accuracy"] == pytest.approx(15 / 20) and r["confident_share"] == pytest.approx(2 / 20)
        assert r["diversity"] > 0
    # the same x_T for every scale: g = 0 is the null class run from the sweep's seed
    x_T = torch.randn(20, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 10
    x0 = guidance.generate_digits_cfg(unet, labels, 0.0, num_steps=2, x_T=x_T)
    assert rows[0]["diversity"] == pytest.approx(guidance.within_class_diversity(x0, labels), rel=1e-12)
    # diversity by hand: two classes, distances 5 (3-4-5) and 0
    images = torch.zeros(4, 1, 1, 2)
    images[1, 0, 0] = torch.tensor([3.0, 4.0])
    assert guidance.within_class_diversity(images, torch.tensor([0, 0, 1, 1])) == pytest.approx(2.5)
    # three points of one class: pairs 1, 1, 2 -> mean 4 / 3
    line = torch.tensor([0.0, 1.0, 2.0]).reshape(3, 1)
    assert guidance.within_class_diversity(line, [5, 5, 5]) == pytest.approx(4 / 3)


# ----------------------------------------------------------------------------------------------
# (e) bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "2", None, True, [2.0], torch.tensor(2.0)])
def test_bad_guidance_scale_is_refused(unet, bad):
    with pytest.raises(CourseInputError, match="guidance_scale must be a finite number"):
        guidance.generate_digits_cfg(unet, [1, 2], bad, num_steps=1)
    with pytest.raises(CourseInputError, match="guidance_scale"):
        guidance.digits_guidance_sweep(unet, [1.0, bad], per_class=1, num_steps=1)
    with pytest.raises(CourseInputError, match="scale must be a finite number"):
        guidance.classifier_guided_eps(torch.zeros(2, 2), torch.zeros(2, 2), 0.5, bad)


@pytest.mark.parametrize("bad", [10, -1, [1, 10], torch.tensor([0, 11]), [1.5], torch.tensor([0.0, 1.0]), [], "3",
                                 [[1, 2]], None])
def test_bad_labels_are_refused(unet, bad):
    with pytest.raises(CourseInputError, match="labels must be digits 0..9"):
        guidance.generate_digits_cfg(unet, bad, 2.0, num_steps=1)


def test_other_bad_input_is_refused(unet):
    with pytest.raises(CourseInputError, match="class-conditional digits UNet"):
        guidance.generate_digits_cfg(models.digits_unet(seed=0), [1], 2.0, num_steps=1)
    with pytest.raises(CourseInputError, match="num_steps"):
        guidance.generate_digits_cfg(unet, [1], 2.0, num_steps=0)
    with pytest.raises(CourseInputError, match="x_T must have shape"):
        guidance.generate_digits_cfg(unet, [1, 2], 2.0, num_steps=1, x_T=torch.zeros(3, 1, 16, 16))
    with pytest.raises(CourseInputError, match="one per sample"):
        guidance.cfg_digits_denoiser(unet, [1, 2], 2.0)(torch.zeros(3, 1, 16, 16), 10)
    with pytest.raises(CourseInputError, match="shapes must match"):
        guidance.classifier_guided_eps(torch.zeros(2, 2), torch.zeros(2, 3), 0.5)
    with pytest.raises(CourseInputError, match="does not broadcast"):
        guidance.score_from_eps(torch.zeros(4, 1, 2, 2), torch.full((4,), 0.5))
    with pytest.raises(CourseInputError, match="floating-point"):
        guidance.eps_from_score(torch.zeros(2, 2, dtype=torch.long), 0.5)
    with pytest.raises(CourseInputError, match="one label per image"):
        guidance.within_class_diversity(torch.zeros(3, 2), [0, 1])
