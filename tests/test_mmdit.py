"""The MMDiT written from scratch (course_lib.mmdit) against diffusers' own modules, piece by piece (nb 10).

Every piece runs on a small random SD3Transformer2DModel (flow_text2image.make_transformer) whose weights are moved
away from the adaLN-zero init, so that gates, modulations and the output projection are not zero, and must give
diffusers' numbers within 1e-5."""

from __future__ import annotations

import pytest
import torch

from course_lib import flow_text2image, mmdit

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-5
SCALE = 0.05  # weights moved this far: gates up to ~0.5, so a wrong piece shows (exact GELU for tanh-GELU: 8e-5)


def perturbed(seed: int, **overrides):
    """make_transformer(seed, **overrides) with SCALE N(0, 1) added to every weight: no zero gate or output layer."""
    model = flow_text2image.make_transformer(seed, **overrides).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(SCALE * torch.randn(p.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def transformer():
    return perturbed(1)  # the course's TRANSFORMER_CONFIG: 4 joint blocks, 4 heads x 32, 2 x 2 patches


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return dict(latents=torch.randn(2, 4, 16, 16, generator=g), timestep=torch.tensor([700.0, 30.0]),
                encoder_hidden_states=torch.randn(2, 32, 128, generator=g), pooled_projections=torch.randn(2, 128, generator=g))


def block_inputs_of(transformer, inputs) -> list[tuple]:
    """Record (hidden_states, encoder_hidden_states, temb) entering each diffusers block during transformer(...)."""
    seen, hooks = [], [block.register_forward_pre_hook(lambda m, a, kw: seen.append(
        (kw["hidden_states"], kw["encoder_hidden_states"], kw["temb"])), with_kwargs=True)
        for block in transformer.transformer_blocks]
    try:
        transformer(inputs["latents"], timestep=inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"],
                    pooled_projections=inputs["pooled_projections"])
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# ----------------------------------------------------------------------------------------------
# 1. Patches, positions, the output path
# ----------------------------------------------------------------------------------------------

def test_unpatchify_inverts_patchify_and_a_token_is_its_patch():
    z = torch.randn(3, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    tokens = mmdit.patchify(z, 2)
    assert tokens.shape == (3, 4 * 6, 2 * 2 * 4)
    assert torch.equal(mmdit.unpatchify(tokens, 2, 8, 12), z)
    # token (row 1, column 4) holds the cells z[:, :, 2:4, 8:10], read (row, column, channel)
    assert torch.equal(tokens[:, 1 * 6 + 4], z[:, :, 2:4, 8:10].permute(0, 2, 3, 1).flatten(1))


def test_the_position_table_is_diffusers_sin_cos_table(transformer):
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    for dim, grid, base, scale in ((128, 8, 8, 1.0), (64, 6, 16, 1.0), (32, 5, 4, 2.0)):
        theirs = get_2d_sincos_pos_embed(dim, grid, base_size=base, interpolation_scale=scale, output_type="pt")
        assert gap(mmdit.sincos_position_table(dim, grid, base, scale), theirs.float()) <= ATOL
    stored = transformer.pos_embed.pos_embed[0]  # the buffer saved with the checkpoint
    assert gap(mmdit.sincos_position_table(128, 8, 8), stored) <= ATOL


@pytest.mark.parametrize("size", [(16, 16), (8, 8), (16, 10)])
def test_patch_embed_equals_patchembed(transformer, size):
    z = torch.randn(2, 4, *size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert gap(mmdit.patch_embed(z, transformer.pos_embed), transformer.pos_embed(z)) <= ATOL  # centre crop too


def test_final_layer_equals_the_transformers_end(transformer, inputs):
    x, y, c = block_inputs_of(transformer, inputs)[-1]
    with torch.no_grad():
        _, x = transformer.transformer_blocks[-1](x, y, c)
        ends = {}  # diffusers' unpatchify is inline in forward: run the end through a hook on proj_out
        hook = transformer.proj_out.register_forward_hook(lambda m, a, out: ends.setdefault("proj", out))
        theirs = transformer(inputs["latents"], timestep=inputs["timestep"],
                             encoder_hidden_states=inputs["encoder_hidden_states"],
                             pooled_projections=inputs["pooled_projections"]).sample
        hook.remove()
        ours = mmdit.final_layer(x, c, transformer, 16, 16)
        assert gap(mmdit.adaln_continuous(x, c, transformer.norm_out.linear), transformer.norm_out(x, c)) <= ATOL
    assert gap(ours, theirs) <= ATOL
    assert gap(mmdit.patchify(ours, 2), ends["proj"]) <= ATOL  # proj_out's rows are the patches, (p, q, C)


# ----------------------------------------------------------------------------------------------
# 2. The conditioning vector
# ----------------------------------------------------------------------------------------------

def test_timestep_embedding_and_conditioning_equal_diffusers(transformer, inputs):
    embed = transformer.time_text_embed
    t = torch.tensor([0.0, 1.0, 37.5, 999.0])
    assert gap(mmdit.timestep_embedding(t), embed.time_proj(t)) <= ATOL
    with torch.no_grad():
        ours = mmdit.conditioning(inputs["timestep"], inputs["pooled_projections"], embed)
        theirs = embed(inputs["timestep"], inputs["pooled_projections"])
        assert gap(ours, theirs) <= ATOL
        one = mmdit.conditioning(250.0, inputs["pooled_projections"], embed)  # a number is every image's t
        assert gap(one, embed(torch.tensor([250.0, 250.0]), inputs["pooled_projections"])) <= ATOL


# ----------------------------------------------------------------------------------------------
# 3. AdaLN
# ----------------------------------------------------------------------------------------------

def test_adaln_modulation_equals_adalayernormzero_for_both_streams(transformer, inputs):
    for block, (x, y, c) in zip(transformer.transformer_blocks, block_inputs_of(transformer, inputs)):
        pairs = [(block.norm1, x)] + ([] if block.context_pre_only else [(block.norm1_context, y)])
        with torch.no_grad():
            for norm, tokens in pairs:
                ours, theirs = mmdit.adaln_modulation(tokens, c, norm.linear), norm(tokens, emb=c)
                assert len(ours) == len(theirs) == 5
                assert max(gap(a, b) for a, b in zip(ours, theirs)) <= ATOL
            if block.context_pre_only:  # the last block's text norm has no gates
                assert gap(mmdit.adaln_continuous(y, c, block.norm1_context.linear), block.norm1_context(y, c)) <= ATOL


def test_modulate_with_no_shift_or_scale_is_a_plain_layer_norm():
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0)) * 3 + 1
    zero = torch.zeros(2, 16)
    assert gap(mmdit.modulate(x, zero, zero), torch.nn.functional.layer_norm(x, (16,), eps=1e-6)) <= ATOL
    shift, scale = torch.randn(2, 16), torch.randn(2, 16)
    expected = torch.nn.functional.layer_norm(x, (16,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    assert gap(mmdit.modulate(x, shift, scale), expected) <= ATOL


# ----------------------------------------------------------------------------------------------
# 4-5. Joint attention, blocks, the whole forward
# ----------------------------------------------------------------------------------------------

def attention_inputs(block, x, y, c):
    x_in = block.norm1(x, emb=c)[0]
    y_in = block.norm1_context(y, c) if block.context_pre_only else block.norm1_context(y, emb=c)[0]
    return x_in, y_in


@pytest.mark.parametrize("qk_norm", [None, "rms_norm", "layer_norm"])
def test_joint_attention_and_joint_block_equal_diffusers(inputs, qk_norm):
    transformer = perturbed(2, qk_norm=qk_norm, num_layers=2)  # block 1: the last, context_pre_only
    for block, (x, y, c) in zip(transformer.transformer_blocks, block_inputs_of(transformer, inputs)):
        with torch.no_grad():
            x_in, y_in = attention_inputs(block, x, y, c)
            ours = mmdit.joint_attention(x_in, y_in, block.attn)
            theirs = block.attn(hidden_states=x_in, encoder_hidden_states=y_in)
            assert max(gap(a, b) for a, b in zip(ours, theirs)) <= ATOL, block.context_pre_only
            (x_ours, y_ours), (y_theirs, x_theirs) = mmdit.joint_block(x, y, c, block), block(x, y, c)
        assert gap(x_ours, x_theirs) <= ATOL
        assert (y_ours is None) == (y_theirs is None) == block.context_pre_only
        assert y_ours is None or gap(y_ours, y_theirs) <= ATOL


@pytest.mark.parametrize("qk_norm", [None, "rms_norm"])
def test_forward_equals_the_transformers_sample(transformer, inputs, qk_norm):
    model = transformer if qk_norm is None else perturbed(3, qk_norm=qk_norm, num_layers=2)
    with torch.no_grad():
        theirs = model(inputs["latents"], timestep=inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"],
                       pooled_projections=inputs["pooled_projections"]).sample
        ours = mmdit.forward(model, **inputs)
    assert theirs.abs().max() > 0.1  # not the adaLN-zero init's 0
    assert gap(ours, theirs) <= ATOL


def test_forward_on_a_smaller_non_square_latent_and_one_timestep(transformer, inputs):
    z = torch.randn(2, 4, 12, 8, generator=torch.Generator().manual_seed(4))
    kw = dict(encoder_hidden_states=inputs["encoder_hidden_states"], pooled_projections=inputs["pooled_projections"])
    with torch.no_grad():
        theirs = transformer(z, timestep=torch.tensor([400.0, 400.0]), **kw).sample
        assert gap(mmdit.forward(transformer, z, 400, **kw), theirs) <= ATOL


def test_attention_quadrants_are_the_blocks_probabilities(transformer, inputs):
    block = transformer.transformer_blocks[1]
    x, y, c = block_inputs_of(transformer, inputs)[1]  # what enters diffusers' block 1
    with torch.no_grad():
        q = mmdit.attention_quadrants(transformer, **inputs, index=1)
        assert q.image_to_image.shape == (2, 4, 64, 64) and q.image_to_text.shape == (2, 4, 64, 32)
        assert q.text_to_image.shape == (2, 4, 32, 64) and q.text_to_text.shape == (2, 4, 32, 32)
        probs = torch.cat([torch.cat([q.image_to_image, q.image_to_text], -1),
                           torch.cat([q.text_to_image, q.text_to_text], -1)], -2)  # (B, h, n + L, n + L)
        assert gap(probs.sum(-1), torch.ones(2, 4, 96)) <= ATOL  # one softmax over image and text keys
        # oracle: the probabilities weight diffusers' own values into diffusers' attention output
        x_in, y_in = attention_inputs(block, x, y, c)
        attn = block.attn
        values = torch.cat([attn.to_v(x_in), attn.add_v_proj(y_in)], 1).view(2, 96, 4, 32).transpose(1, 2)
        mixed = (probs @ values).transpose(1, 2).flatten(2)
        theirs = attn(hidden_states=x_in, encoder_hidden_states=y_in)
        assert gap(attn.to_out[0](mixed[:, :64]), theirs[0]) <= ATOL
        assert gap(attn.to_add_out(mixed[:, 64:]), theirs[1]) <= ATOL


def test_notebook_10s_patchify_check_rejects_wrong_answers(capsys):
    # Exercise A's check, with its cases, against answers a learner might write: each must print a failure
    from course_lib import exercises

    def cases():
        g = torch.Generator().manual_seed(1)
        return [(torch.randn(2, 4, 16, 16, generator=g), 2), (torch.randn(1, 3, 8, 12, generator=g), 4)]

    def channel_first(z, p):  # the values of a patch as (channel, row, column): PatchEmbed's weight order
        b, c, h, w = z.shape
        return z.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, p * p * c)

    def column_major(z, p):  # the grid read column by column
        b, c, h, w = z.shape
        return z.reshape(b, c, h // p, p, w // p, p).permute(0, 4, 2, 3, 5, 1).reshape(b, -1, p * p * c)

    def plain_reshape(z, p):  # no permute at all
        return z.reshape(z.shape[0], -1, p * p * z.shape[1])

    def square_only(z, p):  # right on a square latent, wrong on (8, 12): the grid size taken from H twice
        b, c, h, w = z.shape
        return z.reshape(b, c, h // p, p, h // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)

    for wrong in (channel_first, column_major, plain_reshape, square_only, lambda z, p: torch.zeros(1)):
        exercises.check_function("A", wrong, mmdit.patchify, cases(), atol=0)
        assert capsys.readouterr().out.startswith("❌"), wrong
    exercises.check_function("A", lambda z, p: mmdit.patchify(z, p), mmdit.patchify, cases(), atol=0)
    assert capsys.readouterr().out.startswith("✅")
