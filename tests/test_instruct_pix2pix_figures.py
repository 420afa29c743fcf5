"""Notebook 09's InstructPix2Pix pieces added for its exercises and pictures.

Oracles: autograd on explicit Gaussian log densities for the two factorisations of the guided score
(the tempered product p(z) p(T|z)^s_T p(I|T,z)^s_I, differentiated, not the algebra of eq. 3), the
batch built by hand for guidance_inputs, the recorded batch itself for what show_guidance_batch draws,
and the sweep's numbers for what show_sweep writes in its cells.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import instruct_pix2pix as ip2p  # noqa: E402
from course_lib import instruct_pix2pix_figures as figures  # noqa: E402
from course_lib.validation import CourseInputError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _gaussian_eps(z, mean, std, sigma):
    """eps = -sigma * grad log N(z; mean, std^2), by autograd."""
    z = z.detach().requires_grad_(True)
    log_p = torch.distributions.Normal(mean, std).log_prob(z).sum()
    (grad,) = torch.autograd.grad(log_p, z)
    return -sigma * grad


def _tempered_eps(z, terms, sigma):
    """eps of a tempered product sum_k w_k log N(z; m_k, s_k^2), by autograd."""
    z = z.detach().requires_grad_(True)
    log_p = sum(w * torch.distributions.Normal(m, s).log_prob(z).sum() for w, m, s in terms)
    (grad,) = torch.autograd.grad(log_p, z)
    return -sigma * grad


@pytest.fixture(scope="module")
def gaussians():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=g)
    # p(z), p(z | T), p(z | I), p(z | I, T): four Gaussians with their own means and stds
    dens = {k: (torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=g), 0.5 + torch.rand(2, 4, 3, 3, dtype=torch.float64, generator=g))
            for k in ("none", "text", "image", "full")}
    return z, dens, 0.7


@pytest.mark.parametrize("s_t,s_i", [(4.0, 1.5), (7.5, 1.0), (2.0, 2.5)])
def test_both_factorisations_are_the_score_of_their_tempered_product(gaussians, s_t, s_i):
    z, d, sigma = gaussians
    eps = {k: _gaussian_eps(z, *d[k], sigma) for k in d}
    # p(z) p(I|z)^s_I p(T|I,z)^s_T, with p(I|z) = p(z|I)/p(z) and p(T|I,z) = p(z|I,T)/p(z|I) up to constants in z
    image_first = _tempered_eps(z, [(1 - s_i, *d["none"]), (s_i - s_t, *d["image"]), (s_t, *d["full"])], sigma)
    # p(z) p(T|z)^s_T p(I|T,z)^s_I
    text_first = _tempered_eps(z, [(1 - s_t, *d["none"]), (s_t - s_i, *d["text"]), (s_i, *d["full"])], sigma)
    assert torch.allclose(ip2p.dual_guidance(eps["full"], eps["image"], eps["none"], s_t, s_i), image_first, atol=1e-10)
    assert torch.allclose(ip2p.text_first_guidance(eps["full"], eps["text"], eps["none"], s_t, s_i), text_first, atol=1e-10)
    assert not torch.allclose(image_first, text_first)


def test_the_two_orders_agree_when_the_scales_are_equal(gaussians):
    z, d, sigma = gaussians
    eps = {k: _gaussian_eps(z, *d[k], sigma) for k in d}
    a = ip2p.dual_guidance(eps["full"], eps["image"], eps["none"], 3.0, 3.0)
    b = ip2p.text_first_guidance(eps["full"], eps["text"], eps["none"], 3.0, 3.0)
    assert torch.allclose(a, b, atol=1e-12)  # both are plain CFG on (I, T) together with g = 3


@pytest.fixture(scope="module")
def step():
    g = torch.Generator().manual_seed(1)
    z, image = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    cond, uncond = torch.randn(2, 5, 6, generator=g), torch.randn(2, 5, 6, generator=g)
    return z, image, cond, uncond


def test_guidance_inputs_is_the_eight_channel_three_row_batch(step):
    z, image, cond, uncond = step
    seen = ip2p.guidance_inputs(z, 301, cond, uncond, image, guidance_scale=4.0, image_guidance_scale=1.5)
    by_hand = torch.cat([torch.cat([z, image], 1), torch.cat([z, image], 1), torch.cat([z, torch.zeros_like(image)], 1)])
    assert torch.equal(seen["sample"], by_hand)
    assert torch.equal(seen["encoder_hidden_states"], torch.cat([cond, uncond, uncond]))
    assert seen["timestep"].tolist() == [301] * 6
    plain = ip2p.guidance_inputs(z, 301, cond, uncond, image, guidance_scale=1.0, image_guidance_scale=1.5)
    assert torch.equal(plain["sample"], torch.cat([z, image], 1))  # no guidance: the conditional rows alone


def test_show_guidance_batch_draws_the_recorded_channels(step):
    z, image, cond, uncond = step
    seen = ip2p.guidance_inputs(z[:1], 301, cond[:1], uncond[:1], image[:1])
    fig = figures.show_guidance_batch(seen, cond[:1], "make the red circle blue", guidance_scale=4.0,
                                      image_guidance_scale=1.5)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 24
    for k, ax in enumerate(panels):
        assert torch.allclose(torch.as_tensor(ax.images[0].get_array().data).float(), seen["sample"][k // 8, k % 8])
    texts = [t.get_text() for t in fig.texts]
    assert sum("make the red circle blue" in t for t in texts) == 1  # only the first row reads the instruction
    assert sum('text: ""' in t for t in texts) == 2
    plt.close(fig)
    with pytest.raises(CourseInputError, match="three guided rows"):
        figures.show_guidance_batch(ip2p.guidance_inputs(z, 301, cond, uncond, image), cond, "x", guidance_scale=4.0,
                                    image_guidance_scale=1.5)


SWEEP = [{"guidance_scale": t, "image_guidance_scale": i, "success": 0.5 + 0.01 * k, "locked_psnr": 20.0 + k}
         for k, (t, i) in enumerate((t, i) for t in (2.0, 4.0) for i in (1.0, 1.5, 2.5))]


def test_show_sweep_writes_each_cell_of_the_grid():
    fig = figures.show_sweep(SWEEP, chosen=(4.0, 1.5))
    success, psnr = fig.axes[:2]
    assert sorted(float(t.get_text()) for t in success.texts) == sorted(round(100 * r["success"], 1) for r in SWEEP)
    assert sorted(float(t.get_text()) for t in psnr.texts) == sorted(r["locked_psnr"] for r in SWEEP)
    assert [t.get_text() for t in success.get_yticklabels()] == ["2", "4"]
    assert len(success.patches) == 1  # the chosen cell outlined
    plt.close(fig)
    with pytest.raises(CourseInputError, match="full grid"):
        figures.show_sweep(SWEEP[:-1])
    with pytest.raises(CourseInputError, match="non-empty list"):
        figures.show_sweep([{"guidance_scale": 1.0}])
