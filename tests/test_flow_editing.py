"""course_lib.editing's flow methods (nb 10) against independent oracles.

Oracles: the exact velocity of Gaussian-mixture data (E[eps - x0 | x_sigma] in closed form), on which the
round-trip error of each solver falls at its order; StableDiffusion3Pipeline's own loop for the sampler;
diffusers' JointAttnProcessor2_0 for the joint-attention processor and PatchEmbed's convolution for the
token grid; the update lines of diffusers' community pipeline_flux_rf_inversion.py for RF-Inversion's
steps; closed forms (straight lines to a point, point-mass velocity fields) for RF-Inversion and FlowEdit.
The systems are tiny random FlowSystems built from the course's own CLIP towers: 8x8 latents with
patch_size 1, and 16x16 latents (a VAE with f = 2) with patch_size 2, as the flow family's real model.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import attention, clip, editing, guidance, latent, models, shapes, text
from course_lib import vae as vae_lib
from course_lib.editing import flow_attention, flow_edits, flow_steps, joint_attention

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def towers():
    out = []
    for name, layers in (("clip", 1), ("clip_lit", 2)):
        model, tokenizer = clip.load(name, device="cpu")
        out += [tokenizer, text.text_encoder_with_projection(model, layers)]
    return out


def make_flow_system(towers, size: int = 8, patch: int = 1, **scheduler):
    """A random SD3 transformer (2 joint blocks) on the course's CLIP towers, a VAE with factor 32 / size."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    with models.seeded(5):
        transformer = SD3Transformer2DModel(sample_size=size, patch_size=patch, in_channels=4, out_channels=4,
                                            num_layers=2, attention_head_dim=16, num_attention_heads=2,
                                            joint_attention_dim=128, caption_projection_dim=32,
                                            pooled_projection_dim=128, pos_embed_max_size=size // patch).eval()
    blocks = (8, 16, 16) if size == 8 else (8, 16)
    vae = vae_lib.make_vae(seed=3, block_out_channels=blocks, norm_num_groups=8, shift_factor=0.1, scaling_factor=1.2,
                           down_block_types=("DownEncoderBlock2D",) * len(blocks),
                           up_block_types=("UpDecoderBlock2D",) * len(blocks)).eval()
    return latent.FlowSystem(transformer, vae, *towers, FlowMatchEulerDiscreteScheduler(**{"shift": 3.0, **scheduler}))


@pytest.fixture(scope="module")
def flow_system(towers):
    return make_flow_system(towers)


@pytest.fixture(scope="module")
def flow_system16(towers):
    return make_flow_system(towers, 16, 2)


@pytest.fixture(scope="module")
def case():
    return shapes.edit_cases(1, seed=0, kinds=("colour",))[0]


# ----------------------------------------------------------------------------------------------
# The solvers on an exact velocity field
# ----------------------------------------------------------------------------------------------

MIXTURE = (torch.tensor([[-1.2, 0.4], [0.9, 1.1], [0.5, -1.3]], dtype=torch.float64),  # means (K, D)
           torch.tensor([0.5, 0.4, 0.6], dtype=torch.float64), torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64))


def exact_velocity(data):
    """E[eps - x0 | x_sigma] for x0 ~ sum_k w_k N(m_k, s_k^2 I), x_sigma = (1 - sigma) x0 + sigma eps, in closed form."""
    means, stds, weights = data

    def velocity(x: torch.Tensor, sigma, step=0) -> torch.Tensor:
        sigma = float(sigma)
        var = (1 - sigma) ** 2 * stds**2 + sigma**2  # (K,): x_sigma | k ~ N((1 - sigma) m_k, var_k I)
        centred = x[:, None, :] - (1 - sigma) * means[None]  # (n, K, D)
        log_r = torch.log(weights) - 0.5 * (centred**2).sum(-1) / var - x.shape[1] / 2 * torch.log(var)
        r = torch.softmax(log_r, dim=1)[..., None]  # responsibilities
        x0 = means[None] + ((1 - sigma) * stds**2 / var)[None, :, None] * centred  # E[x0 | x, k]
        eps = (sigma / var)[None, :, None] * centred  # E[eps | x, k]
        return (r * (eps - x0)).sum(1)

    return velocity


def points(n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    means, _, weights = MIXTURE
    return means[torch.multinomial(weights, n, True, generator=g)] + 0.5 * torch.randn(n, 2, generator=g,
                                                                                      dtype=torch.float64)


def orders(errors: list[float]) -> list[float]:
    return [math.log2(a / b) for a, b in zip(errors, errors[1:])]


def reference_solution(field, x: torch.Tensor, start: float, end: float) -> torch.Tensor:
    """x at sigma = end of dx/dsigma = field(x, sigma) from x at sigma = start: scipy's DOP853 at tolerance 1e-12."""
    from scipy.integrate import solve_ivp

    def rhs(sigma, flat):
        return field(torch.from_numpy(flat).view_as(x), sigma).flatten().numpy()

    solution = solve_ivp(rhs, (start, end), x.flatten().numpy(), method="DOP853", rtol=1e-12, atol=1e-12)
    return torch.from_numpy(solution.y[:, -1]).view_as(x)


def test_each_solver_solves_a_mixtures_exact_flow_at_its_order(worst):
    # one leg each way (inversion 0 -> 1, sampling 1 -> 0) against scipy's 8th-order Dormand-Prince:
    # Euler's error halves with the step, RF-Solver's and FireFlow's fall by four
    field, x = exact_velocity(MIXTURE), points()
    for start, end in ((0.0, 1.0), (1.0, 0.0)):
        exact = reference_solution(field, x, start, end)
        measured = {}
        for solver in editing.SOLVERS:
            errors = [float((editing.solve_ode(field, x, torch.linspace(start, end, n + 1, dtype=torch.float64),
                                               solver).end - exact).abs().max()) for n in (16, 32, 64)]
            measured[solver] = orders(errors)
            worst(f"flow editing: {solver} order, sigma {start:g} -> {end:g} on a mixture (32 -> 64 steps)",
                  measured[solver][-1])
        assert all(0.9 < o < 1.1 for o in measured["euler"]), measured
        assert all(1.85 < o < 2.2 for o in measured["rf_solver"] + measured["fireflow"]), measured


def test_each_solver_inverts_a_mixtures_exact_flow_at_its_round_trip_order(worst):
    # invert then sample on the same grid: Euler's round trip is order 1; a second-order step and its reverse cancel
    # each other's leading (odd, h^3) local errors, so their round trip is order 3
    field, x0 = exact_velocity(MIXTURE), points()
    measured = {}
    for solver in editing.SOLVERS:
        errors = []
        for n in (16, 32, 64):
            sigmas = torch.linspace(1, 0, n + 1, dtype=torch.float64)
            z1 = editing.solve_ode(field, x0, sigmas.flip(0), solver).end
            errors.append(float((editing.solve_ode(field, z1, sigmas, solver).end - x0).abs().max()))
        measured[solver] = orders(errors)
        worst(f"flow editing: {solver} round-trip order on a mixture (32 -> 64 steps)", measured[solver][-1])
    assert all(0.85 < o < 1.2 for o in measured["euler"]), measured
    assert all(2.8 < o < 3.3 for o in measured["rf_solver"] + measured["fireflow"]), measured
    # RF-Solver's Taylor step is the explicit midpoint rule written another way
    sigmas = torch.linspace(0, 1, 9, dtype=torch.float64)
    midpoint = x0
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        h = s_next - s
        midpoint = midpoint + h * field(midpoint + h / 2 * field(midpoint, s), s + h / 2)
    assert torch.allclose(editing.solve_ode(field, x0, sigmas, "rf_solver").end, midpoint, atol=1e-12)
    assert [editing.solve_ode(field, x0, sigmas, s).nfe for s in editing.SOLVERS] == [8, 16, 9]


def test_flow_sample_is_the_sd3_pipelines_loop(flow_system, worst):
    from diffusers import StableDiffusion3Pipeline

    system = flow_system
    parts = {name: getattr(system, name) for name in system.components}  # the pipeline's own component names
    pipe = StableDiffusion3Pipeline(**parts, text_encoder_3=None, tokenizer_3=None)
    prompts = ["a red circle in the top left", "a blue square on the right, on a black background"]
    z1 = system.prepare_latents(2, generator=3)
    ours = editing.flow_sample(system, z1, prompts, editing.FlowInversionSettings("euler", 6, guidance_scale=4.0))
    want = pipe(prompts, num_inference_steps=6, guidance_scale=4.0, latents=z1, max_sequence_length=0,
                output_type="latent").images
    worst("flow editing: flow_sample vs StableDiffusion3Pipeline latents", float((ours - want).abs().max()))
    assert torch.allclose(ours, want, atol=1e-5)
    # one batched call of two branches gives each branch's guidance.cfg_denoiser velocity
    cond, empty = system.encode_prompt(prompts[:1]), system.encode_prompt([""])
    both = flow_steps.GuidedVelocity(system, [flow_steps.Branch("a", cond, empty, 4.0), flow_steps.Branch("b", cond)])
    v = both(torch.cat([z1[:1], z1[1:]]), torch.tensor(0.7))
    sigma = torch.tensor(0.7)
    alone = guidance.cfg_denoiser(system, 4.0, cond, empty, pipeline_convention=True)(z1[:1], system.timestep(sigma))
    plain = guidance.cfg_denoiser(system, 1.0, cond, None, pipeline_convention=True)(z1[1:], system.timestep(sigma))
    assert torch.allclose(v, torch.cat([alone, plain]), atol=1e-5) and both.calls == 1


def test_reconstruction_improves_with_order_and_counts_the_transformer_calls(flow_system16, case):
    rows = editing.flow_reconstruction(flow_system16, case.source_image, case.source_caption,
                                       [editing.FlowInversionSettings(s, n, guidance_scale=1.0)
                                        for s in editing.SOLVERS for n in (4, 8)])
    psnr = {(r["solver"], r["num_steps"]): r["psnr_db"] for r in rows}
    assert [r["nfe"] for r in rows] == [2 * editing.solver_nfe(s, n) for s in editing.SOLVERS for n in (4, 8)]
    for s in editing.SOLVERS:
        assert psnr[s, 8] > psnr[s, 4]
    assert min(psnr["rf_solver", 8], psnr["fireflow", 8]) > psnr["euler", 8] + 10


# ----------------------------------------------------------------------------------------------
# RF-Inversion
# ----------------------------------------------------------------------------------------------

def test_one_controlled_step_equals_the_diffusers_community_pipelines_update(worst):
    g = torch.Generator().manual_seed(1)
    y_0, y_1, Y_t, latents, noise_pred = (torch.randn(1, 4, 8, 8, generator=g) for _ in range(5))
    sigmas = torch.tensor([1.0, 0.8, 0.55, 0.3, 0.0])
    gamma, eta, i = 0.5, 0.9, 1
    # pipeline_flux_rf_inversion.py, invert(): "controlled vector field", Eq 8, with its t_i taken as the step's sigma
    t_i = sigmas.flip(0)[i]
    u_t_i_cond = (y_1 - Y_t) / (1 - t_i)
    u_hat_t_i = noise_pred + gamma * (u_t_i_cond - noise_pred)
    theirs = Y_t + u_hat_t_i * (sigmas.flip(0)[i + 1] - sigmas.flip(0)[i])
    ours = editing.controlled_step(noise_pred, Y_t, y_1, sigmas.flip(0)[i], sigmas.flip(0)[i + 1], 1.0, gamma)
    worst("flow editing: RF-Inversion forward step vs the community pipeline", float((ours - theirs).abs().max()))
    assert torch.allclose(ours, theirs, atol=1e-6)
    # __call__(): "Controlled Reverse ODE, Algorithm 2", v_t = -noise_pred, t_i = 1 - t / 1000 with t = 1000 sigma
    t = 1000 * sigmas[i]
    t_i = 1 - t / 1000
    v_t = -noise_pred
    v_t_cond = (y_0 - latents) / (1 - t_i)
    v_hat_t = v_t + eta * (v_t_cond - v_t)
    theirs = latents + v_hat_t * (sigmas[i] - sigmas[i + 1])
    ours = editing.controlled_step(noise_pred, latents, y_0, sigmas[i], sigmas[i + 1], 0.0, eta)
    worst("flow editing: RF-Inversion reverse step vs the community pipeline", float((ours - theirs).abs().max()))
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_full_control_makes_both_odes_straight_lines(flow_system16, case, worst):
    # gamma = 1: the forward ODE is the straight line to y1 (it ends ON y1); eta = 1 throughout: the reverse
    # ODE is the straight line back to y0, so the edit returns the source latent whatever the model says
    system = flow_system16
    z0 = system.encode_image(case.source_image[None])
    settings = editing.RFInversionSettings(gamma=1.0, eta=1.0, eta_window=(0.0, 1.0), num_steps=6)
    z = flow_edits.rf_inversion_latents(system, z0, [case.source_caption], [case.target_caption], settings, None)
    worst("flow editing: RF-Inversion gamma = eta = 1 vs the source latent", float((z - z0).abs().max()))
    assert torch.allclose(z, z0, atol=1e-5)
    y1 = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
    ascending = system.schedule(6)[1].flip(0)
    up = editing.solve_ode(lambda x, s, i: editing.controlled_velocity(torch.randn_like(x), x, y1, s, 1.0, 1.0), z0,
                           ascending)
    assert torch.allclose(up.end, y1, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# FlowEdit
# ----------------------------------------------------------------------------------------------

def test_flowedit_maps_a_point_mass_to_a_point_mass_exactly(worst):
    # the exact velocities of data that is one point (x_src for the source prompt, y for the target): v = (z - p) / sigma.
    # FlowEdit's Z_FE then follows dZ/dsigma = (Z - y) / sigma, whose Euler steps end exactly on y, whatever the noise
    g = torch.Generator().manual_seed(2)
    x_src, y = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    sigmas = torch.linspace(1, 0, 11)

    def delta(z_src, z_tar, s):
        return (z_src - torch.cat([x_src] * (len(z_src) // 2))) / s, (z_tar - torch.cat([y] * (len(z_tar) // 2))) / s

    for n_max, n_min, n_avg in ((10, 0, 1), (7, 0, 3), (10, 4, 2)):
        z = editing.flowedit_latents(delta, lambda z, s, i: (z - y) / s, x_src, sigmas, n_max, n_min, n_avg,
                                     torch.Generator().manual_seed(n_avg))
        worst("flow editing: FlowEdit between point masses vs the target point", float((z - y).abs().max()))
        assert torch.allclose(z, y, atol=1e-5), (n_max, n_min, n_avg)


def test_flowedit_ignores_the_noise_when_the_prompts_shift_a_linear_field_and_keeps_shared_velocities():
    g = torch.Generator().manual_seed(3)
    x_src, b = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)

    def delta(z_src, z_tar, s):  # v_c(z, s) = -2 s z + b_c: one slope, prompts differ by a constant offset
        return -2 * s * z_src, -2 * s * z_tar + b

    sigmas = torch.linspace(1, 0, 9)
    runs = [editing.flowedit_latents(delta, None, x_src, sigmas, 8, 0, 1, torch.Generator().manual_seed(k))
            for k in (0, 1)]
    assert torch.allclose(runs[0], runs[1], atol=1e-6)
    # the closed form: D = Z - x_src follows D' = D + h (-2 s D + b) from D = 0
    d = torch.zeros_like(x_src)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = d + (s_next - s) * (-2 * s * d + b)
    assert torch.allclose(runs[0], x_src + d, atol=1e-6)
    same = editing.flowedit_latents(lambda zs, zt, s: (zs * s, zt * s), None, x_src, sigmas, 8, 0, 2, g)
    assert torch.allclose(same, x_src, atol=1e-6)  # identical velocity fields for both prompts: nothing moves


def test_flowedit_with_a_prompt_blind_transformer_returns_the_source(towers, case, worst):
    system = make_flow_system(towers)
    with torch.no_grad():  # the text reaches the transformer only through these two layers
        system.transformer.context_embedder.weight.zero_()
        system.transformer.context_embedder.bias.zero_()
        system.transformer.time_text_embed.text_embedder.linear_1.weight.zero_()
    x_src = system.encode_image(case.source_image[None])
    pair = flow_steps.GuidedVelocity(system, [flow_steps.branch(system, "source", [case.source_caption], 3.5),
                                              flow_steps.branch(system, "target", [case.target_caption], 13.5)])
    z = editing.flowedit_latents(lambda a, b, s: pair(torch.cat([a, b]), s).chunk(2), None, x_src,
                                 system.schedule(8)[1], 6, 0, 1, torch.Generator().manual_seed(0))
    worst("flow editing: FlowEdit with a prompt-blind transformer vs the source", float((z - x_src).abs().max()))
    assert torch.allclose(z, x_src, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Joint attention: the processor, the token grid, prompt-to-prompt and KV-Edit
# ----------------------------------------------------------------------------------------------

class ExplicitProbs(editing.JointAttentionControl):
    def wants_probs(self, name):
        return True


@torch.no_grad()
def test_the_joint_processor_is_diffusers_and_is_restored(flow_system16, worst):
    system = flow_system16
    transformer = system.transformer
    originals = dict(transformer.attn_processors)
    z = system.prepare_latents(2, generator=1)
    cond = system.encode_prompt(["a red circle", "a blue square"])
    want = system.predict(z, 500.0, cond)
    for control in (editing.JointAttentionControl(), ExplicitProbs()):
        control.blocks = ("all",)
        with attention.record_attention(transformer, control):
            assert all(isinstance(p, joint_attention.JointAttentionProcessor) for p in transformer.attn_processors.values())
            got = system.predict(z, 500.0, cond)
        worst("flow editing: JointAttentionProcessor vs JointAttnProcessor2_0", float((got - want).abs().max()))
        assert torch.allclose(got, want, atol=1e-5)
    assert transformer.attn_processors == originals
    from diffusers import SD3Transformer2DModel

    with models.seeded(0):  # SD3.5's blocks: normalised queries and keys, and an image-only second attention
        sd35 = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                     attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                     caption_projection_dim=32, pooled_projection_dim=16, pos_embed_max_size=8,
                                     qk_norm="rms_norm", dual_attention_layers=(0,)).eval()
    inputs = (torch.randn(2, 4, 8, 8), torch.randn(2, 5, 32), torch.randn(2, 16), torch.tensor([300.0, 300.0]))
    with torch.no_grad():
        want = sd35(*inputs).sample
        with attention.record_attention(sd35, ExplicitProbs(blocks=("all",))):
            assert torch.allclose(sd35(*inputs).sample, want, atol=1e-5)


def test_token_masks_follow_patch_embeds_own_grid(flow_system16):
    conv = flow_system16.transformer.pos_embed.proj  # PatchEmbed: Conv2d(kernel = stride = p), then flatten(2)
    for cell in ((0, 0), (3, 6), (15, 14), (9, 1)):
        x = torch.zeros(1, 4, 16, 16)
        x[0, :, cell[0], cell[1]] = 1.0
        with torch.no_grad():
            touched = (conv(x) - conv(torch.zeros_like(x))).abs().sum(1).flatten(1) > 0  # (1, 64)
        mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
        mask[0, 0, cell[0], cell[1]] = True
        assert torch.equal(editing.token_mask(mask, 2), touched)
        cells = editing.whole_tokens(mask, 2)
        assert int(cells.sum()) == 4 and cells[0, 0, cell[0] // 2 * 2, cell[1] // 2 * 2]


def test_joint_attention_replace_takes_the_sources_word_attention_and_keeps_rows_stochastic():
    g = torch.Generator().manual_seed(4)
    n, length = 6, 5
    probs = torch.randn(2, 2, n + length, n + length, generator=g).softmax(-1)  # blocks source.cond, target.cond
    mapper = torch.tensor([0, 1, -1, 2, 3])  # text position 2 of the target is a new word
    control = editing.JointAttentionReplace(mapper=mapper, cross_window=(0.0, 1.0), self_window=(0.0, 0.0))
    control.blocks = ("source.cond", "target.cond")
    out = control.edit_probs("layer", probs, n)
    src, tgt, new = probs[0, :, :n], probs[1, :, :n], out[1, :, :n]
    taken = torch.tensor([0, 1, 3, 4])
    assert torch.allclose(new[..., n + taken], src[..., n + mapper[taken]])
    assert torch.allclose(new[..., n + 2], tgt[..., n + 2]) and torch.allclose(new.sum(-1), torch.ones(2, n))
    assert torch.equal(out[0], probs[0]) and torch.equal(out[1, :, n:], probs[1, :, n:])  # text queries untouched
    layout = editing.JointAttentionReplace(cross_window=(0.0, 0.0), self_window=(0.0, 1.0))
    layout.blocks = control.blocks
    new = layout.edit_probs("layer", probs, n)[1, :, :n]
    pattern = new[..., :n] / new[..., :n].sum(-1, keepdim=True)
    assert torch.allclose(pattern, src[..., :n] / src[..., :n].sum(-1, keepdim=True), atol=1e-6)
    assert torch.allclose(new[..., n:], tgt[..., n:]) and torch.allclose(new.sum(-1), torch.ones(2, n))


def test_flow_p2p_with_its_windows_off_is_the_inversion_edit(flow_system, case):
    args = (flow_system, case.source_image, case.source_caption, case.target_caption)
    settings = editing.FlowInversionSettings("euler", 5)
    off = editing.flow_prompt_to_prompt(*args, inversion=settings,
                                        settings=editing.FlowP2PSettings(cross_window=(0, 0), self_window=(0, 0)))
    assert torch.allclose(off.image, editing.flow_inversion_edit(*args, inversion=settings).image, atol=1e-5)
    on = editing.flow_prompt_to_prompt(*args, inversion=settings)
    assert (on.image - off.image).abs().max() > 1e-3 and off.mask is None


@torch.no_grad()
def test_kv_injection_makes_the_foreground_blind_to_the_targets_own_background(flow_system16, worst):
    system = flow_system16
    cond = system.encode_prompt(["a red circle in the top left"])
    z = system.prepare_latents(1, generator=2)
    cells = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    cells[..., 4:10, 2:8] = True  # whole tokens
    cache = editing.KVCache(mode="record", blocks=("source.cond",))
    with attention.record_attention(system.transformer, cache):
        system.predict(system.prepare_latents(1, generator=3), 600.0, cond)  # the "source" at this step
        cache.mode, cache.background, cache.blocks = "inject", ~editing.token_mask(cells, 2), ("target.cond",)
        v = system.predict(z, 600.0, cond)
        other = torch.where(cells, z, torch.randn(z.shape, generator=torch.Generator().manual_seed(9)))
        v_other = system.predict(other, 600.0, cond)
    worst("flow editing: KV-Edit foreground velocity, two target backgrounds", float(((v - v_other) * cells).abs().max()))
    assert torch.allclose(torch.where(cells, v, 0), torch.where(cells, v_other, 0), atol=1e-5)
    assert (v - v_other).abs().max() > 1e-2  # outside, the target's own tokens still differ


def test_kv_edit_keeps_the_latents_outside_its_cell_mask_exactly(flow_system16, case):
    # the latents are locked per latent cell (finer than a token); the keys and values are the source's per token
    system = flow_system16
    z0 = system.encode_image(case.source_image[None])
    cells = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    cells[..., 5, 3] = cells[..., 8:11, 9] = True  # cells, not whole tokens
    for solver in ("euler", "fireflow"):
        z = flow_attention.kv_edit_latents(system, z0, [case.source_caption], [case.target_caption], cells,
                                           editing.FlowInversionSettings(solver, 5), "inverted", None)
        assert torch.equal(torch.where(cells, 0, z), torch.where(cells, 0, z0))  # every other cell: z0 exactly
        assert (z - z0)[cells.expand_as(z)].abs().max() > 1e-3
    pixels = torch.zeros(32, 32, dtype=torch.bool)
    pixels[10:12, 6:8] = True  # one latent cell (2 x 2 pixels)
    out = editing.kv_edit(system, case.source_image, case.source_caption, case.target_caption, mask=pixels,
                          inversion=editing.FlowInversionSettings("euler", 3), generator=0)
    assert out.mask.shape == (1, 32, 32) and int(out.mask.sum()) == 4  # the cell, not its 4 x 4-pixel token


# ----------------------------------------------------------------------------------------------
# Every method, end to end, through the registry
# ----------------------------------------------------------------------------------------------

FAST = {"flow_inversion": {"num_steps": 4}, "rf_inversion": {"num_steps": 4}, "flowedit": {"num_steps": 6, "n_max": 4},
        "flow_p2p": {"num_steps": 5}, "kv_edit": {"num_steps": 4, "mask_draws": 1}}


@pytest.mark.parametrize("name", sorted(FAST))
def test_every_flow_method_runs_and_keeps_shape_and_range(flow_system, flow_system16, case, name):
    for system in (flow_system, flow_system16):
        out = editing.METHODS[name](system, case.source_image, case.source_caption, case.target_caption, generator=0,
                                    **FAST[name])
        assert out.shape == case.source_image.shape and out.dtype == torch.float32
        assert out.min() >= -1 and out.max() <= 1 and torch.isfinite(out).all()
    batch = torch.stack([case.source_image, case.source_image.flip(-1)])
    out = editing.METHODS[name](flow_system16, batch, case.source_caption, case.target_caption, generator=0,
                                **FAST[name])
    assert out.shape == batch.shape
    assert editing.run_case(name, flow_system16, case, generator=0, **FAST[name]).shape == case.source_image.shape


def test_the_registry_names_each_family_once():
    from course_lib.editing import checks

    assert set(checks.UNET_METHODS) | set(checks.FLOW_METHODS) == set(editing.METHODS)
    assert not set(checks.UNET_METHODS) & set(checks.FLOW_METHODS)


def test_the_flow_masks_are_at_the_latent_grid_and_attention_gives_whole_tokens(flow_system16, case):
    for source in ("diffedit", "attention"):
        mask = editing.flow_edit_mask(flow_system16, case.source_image, case.source_caption, case.target_caption,
                                      source=source, num_draws=2, threshold=0.5, grow_cells=0, generator=0)
        assert mask.shape == (1, 1, 16, 16) and mask.dtype == torch.bool and mask.any()
        if source == "attention":  # a map per token: its mask is whole tokens; the velocity difference is per cell
            assert torch.equal(editing.whole_tokens(mask, 2), mask)
    again = editing.flow_edit_mask(flow_system16, case.source_image, case.source_caption, case.target_caption,
                                   num_draws=2, threshold=0.5, grow_cells=0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, editing.flow_edit_mask(flow_system16, case.source_image, case.source_caption,
                                                     case.target_caption, num_draws=2, threshold=0.5, grow_cells=0,
                                                     generator=0))
