"""Probes of the from-scratch MMDiT's doors (course_lib.mmdit, nb 10): bad and unusual input to every public function.

Wrong shapes and widths, a patch size that does not divide the latent, a latent larger than the position table,
NaN anywhere, a module of the wrong kind (a Linear for the transformer, an attention for a block, SD3.5's dual
attention), timesteps of the wrong count, numpy scalars. Each probe expects a CourseInputError whose message
names the parameter, or acceptance with a result checked against diffusers or a closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention

from course_lib import flow_text2image, mmdit
from probing import accepted, close, equal, refused

pytestmark = pytest.mark.usefixtures("one_thread")

NAN = float("nan")
TINY = dict(num_layers=2, attention_head_dim=16, num_attention_heads=2, caption_projection_dim=32)
MODEL = flow_text2image.make_transformer(0, **TINY).eval()  # D = 32; block 1 is the last (context_pre_only)
BLOCK, LAST = MODEL.transformer_blocks
G = torch.Generator().manual_seed(0)
Z = torch.randn(2, 4, 16, 16, generator=G)
STATES, POOLED, T = torch.randn(2, 5, 128, generator=G), torch.randn(2, 128, generator=G), torch.tensor([500.0, 20.0])
X, Y, C = torch.randn(2, 64, 32, generator=G), torch.randn(2, 5, 32, generator=G), torch.randn(2, 32, generator=G)


def nan_at(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[1] = NAN
    return x


def sample(t=T, latents=Z):
    with torch.no_grad():
        return MODEL(latents, timestep=t, encoder_hidden_states=STATES, pooled_projections=POOLED).sample


def dual_attention_model():
    return flow_text2image.make_transformer(0, **TINY, dual_attention_layers=(0,))


def dual_self_attention():  # SD3.5's second attention in a dual block: image tokens only, no text projections
    return dual_attention_model().transformer_blocks[0].attn2


def across_heads_attention():  # Lumina/LTX-style qk-norm over all heads at once
    return Attention(32, added_kv_proj_dim=32, heads=2, kv_heads=2, dim_head=16, qk_norm="rms_norm_across_heads",
                     context_pre_only=False)


def quadrants(states=STATES, index=0):
    return mmdit.attention_quadrants(MODEL, Z, T, states, POOLED, index)


def forward(latents=Z, t=T, states=STATES, pooled=POOLED, model=MODEL):
    with torch.no_grad():
        return mmdit.forward(model, latents, t, states, pooled)


PROBES = {
    # ---------------------------------------------------------------- patches and positions
    "patchify a 3-D latent": (lambda: mmdit.patchify(Z[0], 2), refused("latents", "(B, C, H, W)")),
    "patchify by 3 on 16x16": (lambda: mmdit.patchify(Z, 3), refused("patch_size=3", "multiples")),
    "patchify a 15x16 latent": (lambda: mmdit.patchify(Z[..., 1:, :], 2), refused("(15, 16)", "patch_size=2")),
    "patchify NaN": (lambda: mmdit.patchify(nan_at(Z), 2), refused("latents", "NaN")),
    "patchify int latents": (lambda: mmdit.patchify(torch.ones(1, 4, 4, 4, dtype=torch.long), 2),
                             refused("latents", "floating-point")),
    "patchify patch_size 0": (lambda: mmdit.patchify(Z, 0), refused("patch_size", "positive int")),
    "patchify patch_size True": (lambda: mmdit.patchify(Z, True), refused("patch_size", "positive int")),
    "patchify patch_size 2.0": (lambda: mmdit.patchify(Z, 2.0), refused("patch_size", "positive int")),
    "patchify numpy patch size": (lambda: mmdit.patchify(Z, np.int64(2)), equal(lambda: mmdit.patchify(Z, 2))),
    "patchify patch 1 is a flattening": (lambda: mmdit.patchify(Z, 1), equal(Z.flatten(2).transpose(1, 2))),
    "unpatchify a wrong token count": (lambda: mmdit.unpatchify(torch.zeros(2, 63, 16), 2, 16, 16),
                                       refused("tokens", "(B, 64, 2*2*C)")),
    "unpatchify a width not of p*p*C": (lambda: mmdit.unpatchify(torch.zeros(2, 64, 6), 2, 16, 16), refused("tokens")),
    "unpatchify an odd height": (lambda: mmdit.unpatchify(torch.zeros(2, 56, 16), 2, 15, 16), refused("(15, 16)")),
    "unpatchify height 0": (lambda: mmdit.unpatchify(torch.zeros(2, 64, 16), 2, 0, 16), refused("height")),
    "unpatchify numpy sizes": (lambda: mmdit.unpatchify(mmdit.patchify(Z, 2), np.int64(2), np.int64(16), np.int32(16)),
                               equal(Z)),
    "position table dim not a multiple of 4": (lambda: mmdit.sincos_position_table(130, 8, 8), refused("dim", "multiple of 4")),
    "position table base 0": (lambda: mmdit.sincos_position_table(128, 8, 0), refused("base_size")),
    "position table NaN scale": (lambda: mmdit.sincos_position_table(128, 8, 8, NAN), refused("interpolation_scale")),
    "position table numpy": (lambda: mmdit.sincos_position_table(np.int64(32), np.int64(4), np.float32(4.0)),
                             close(mmdit.sincos_position_table(32, 4, 4.0))),
    "patch_embed with a Linear": (lambda: mmdit.patch_embed(Z, MODEL.proj_out), refused("pos_embed", "PatchEmbed")),
    "patch_embed 3 channels": (lambda: mmdit.patch_embed(Z[:, :3], MODEL.pos_embed), refused("latents", "4 channels")),
    "patch_embed 18x18 past the table": (lambda: mmdit.patch_embed(torch.zeros(1, 4, 18, 18), MODEL.pos_embed),
                                         refused("latents", "pos_embed_max_size", "16x16")),
    "patch_embed 15x16": (lambda: mmdit.patch_embed(Z[..., 1:, :], MODEL.pos_embed), refused("patch_size=2")),
    "patch_embed NaN": (lambda: mmdit.patch_embed(nan_at(Z), MODEL.pos_embed), refused("latents", "NaN")),
    # ---------------------------------------------------------------- conditioning
    "timestep_embedding odd dim": (lambda: mmdit.timestep_embedding(T, 255), refused("dim", "even")),
    "timestep_embedding NaN": (lambda: mmdit.timestep_embedding(torch.tensor([1.0, NAN])), refused("timestep", "NaN")),
    "timestep_embedding a 2-D tensor": (lambda: mmdit.timestep_embedding(torch.ones(2, 2)), refused("timestep", "(B,)")),
    "timestep_embedding bool": (lambda: mmdit.timestep_embedding(True), refused("timestep")),
    "timestep_embedding a string": (lambda: mmdit.timestep_embedding("500"), refused("timestep")),
    "timestep_embedding numpy and int tensors": (lambda: mmdit.timestep_embedding(np.float32(500.0)),
                                                 close(MODEL.time_text_embed.time_proj(torch.tensor([500])))),
    "timestep_embedding long tensor": (lambda: mmdit.timestep_embedding(torch.tensor([3, 999])),
                                       close(MODEL.time_text_embed.time_proj(torch.tensor([3, 999])))),
    "timestep_embedding at t=0 is [1, 0]": (lambda: mmdit.timestep_embedding(0.0, 8),
                                            equal(torch.tensor([[1.0] * 4 + [0.0] * 4]))),
    "conditioning pooled width 64": (lambda: mmdit.conditioning(T, POOLED[:, :64], MODEL.time_text_embed),
                                     refused("pooled_projections", "width 128")),
    "conditioning 3 timesteps for 2": (lambda: mmdit.conditioning(torch.ones(3), POOLED, MODEL.time_text_embed),
                                       refused("timestep", "one per image (2)")),
    "conditioning NaN pooled": (lambda: mmdit.conditioning(T, nan_at(POOLED), MODEL.time_text_embed),
                                refused("pooled_projections", "NaN")),
    "conditioning with the transformer": (lambda: mmdit.conditioning(T, POOLED, MODEL), refused("time_text_embed")),
    # ---------------------------------------------------------------- AdaLN
    "modulate shift of another batch": (lambda: mmdit.modulate(X, C[:1], C), refused("shift", "one row per image (2)")),
    "modulate NaN scale": (lambda: mmdit.modulate(X, C, nan_at(C)), refused("scale", "NaN")),
    "modulate 2-D x": (lambda: mmdit.modulate(X[0], C, C), refused("x", "(B, N, D)")),
    "adaln_modulation with norm_out's linear": (lambda: mmdit.adaln_modulation(X, C, MODEL.norm_out.linear),
                                                refused("linear", "6 D")),
    "adaln_modulation c of another batch": (lambda: mmdit.adaln_modulation(X, C[:1], BLOCK.norm1.linear),
                                            refused("c", "one row per image (2)")),
    "adaln_modulation x too wide": (lambda: mmdit.adaln_modulation(torch.zeros(2, 4, 33), C, BLOCK.norm1.linear),
                                    refused("x", "width 32")),
    "adaln_modulation a module": (lambda: mmdit.adaln_modulation(X, C, BLOCK.norm1), refused("linear", "Linear")),
    "adaln_continuous with a six-way linear": (lambda: mmdit.adaln_continuous(X, C, BLOCK.norm1.linear),
                                               refused("linear", "2 D")),
    "adaln-zero init: gates 0": (lambda: mmdit.adaln_modulation(X, C, BLOCK.norm1.linear).gate_msa, equal(torch.zeros(2, 32))),
    # ---------------------------------------------------------------- joint attention and blocks
    "joint_attention batch 2 and 1": (lambda: mmdit.joint_attention(X, Y[:1], BLOCK.attn),
                                      refused("text_tokens", "one row per image (2)")),
    "joint_attention text too wide": (lambda: mmdit.joint_attention(X, torch.zeros(2, 5, 128), BLOCK.attn),
                                      refused("text_tokens", "width 32")),
    "joint_attention a block for attn": (lambda: mmdit.joint_attention(X, Y, BLOCK), refused("attn", "Attention")),
    "joint_attention SD3.5's self-attention": (lambda: mmdit.joint_attention(X, Y, dual_self_attention()),
                                               refused("attn", "text-stream")),
    "joint_attention a qk-norm across heads": (lambda: mmdit.joint_attention(X, Y, across_heads_attention()),
                                                refused("attn.norm_q", "per-head")),
    "joint_attention NaN text": (lambda: mmdit.joint_attention(X, nan_at(Y), BLOCK.attn), refused("text_tokens", "NaN")),
    "joint_attention no text tokens": (lambda: mmdit.joint_attention(X, Y[:, :0], BLOCK.attn),
                                       accepted(lambda out: out[1].shape == (2, 0, 32))),
    "joint_block an attention for block": (lambda: mmdit.joint_block(X, Y, C, BLOCK.attn),
                                           refused("block", "JointTransformerBlock")),
    "joint_block c of another batch": (lambda: mmdit.joint_block(X, Y, C[:1], BLOCK), refused("c", "one row per image (2)")),
    "joint_block dual attention": (lambda: mmdit.joint_block(X, Y, C, dual_attention_model().transformer_blocks[0]),
                                   refused("block", "dual-attention")),
    "joint_block at the adaLN-zero init is the identity": (lambda: mmdit.joint_block(X, Y, C, BLOCK)[0], equal(X)),
    "joint_block the last returns no text": (lambda: mmdit.joint_block(X, Y, C, LAST), accepted(lambda out: out[1] is None)),
    "final_layer 63 tokens": (lambda: mmdit.final_layer(X[:, 1:], C, MODEL, 16, 16), refused("image_tokens", "64 tokens")),
    "final_layer a block for transformer": (lambda: mmdit.final_layer(X, C, BLOCK, 16, 16), refused("transformer")),
    "final_layer odd width": (lambda: mmdit.final_layer(X, C, MODEL, 16, 15), refused("(16, 15)", "patch_size=2")),
    "final_layer at the init predicts 0": (lambda: mmdit.final_layer(X, C, MODEL, 16, 16), equal(torch.zeros(2, 4, 16, 16))),
    # ---------------------------------------------------------------- the whole transformer
    "forward a Linear for the transformer": (lambda: forward(model=torch.nn.Linear(2, 2)),
                                             refused("transformer", "SD3Transformer2DModel")),
    "forward SD3.5 dual attention": (lambda: forward(model=dual_attention_model()), refused("transformer", "dual-attention")),
    "forward a 3-D latent": (lambda: forward(latents=Z[0]), refused("latents")),
    "forward 16 channels": (lambda: forward(latents=torch.zeros(2, 16, 16, 16)), refused("latents", "4 channels")),
    "forward 15x16": (lambda: forward(latents=Z[..., 1:, :]), refused("latents'", "patch_size=2")),
    "forward 32x32 past the table": (lambda: forward(latents=torch.zeros(2, 4, 32, 32)), refused("pos_embed_max_size")),
    "forward NaN latents": (lambda: forward(latents=nan_at(Z)), refused("latents", "NaN")),
    "forward NaN states": (lambda: forward(states=nan_at(STATES)), refused("encoder_hidden_states", "NaN")),
    "forward infinite pooled": (lambda: forward(pooled=POOLED.clone().fill_(float("inf"))),
                                refused("pooled_projections", "infinite")),
    "forward NaN timestep": (lambda: forward(t=NAN), refused("timestep")),
    "forward 3 timesteps for 2": (lambda: forward(t=torch.ones(3)), refused("timestep", "one per image (2)")),
    "forward states of width 64": (lambda: forward(states=STATES[..., :64]), refused("encoder_hidden_states", "width 128")),
    "forward states of another batch": (lambda: forward(states=STATES[:1]),
                                        refused("encoder_hidden_states", "one row per image (2)")),
    "forward numpy timestep": (lambda: forward(t=np.float32(250.0)), close(sample(torch.tensor([250.0, 250.0])), 1e-5)),
    "forward a 0-D timestep tensor": (lambda: forward(t=torch.tensor(250.0)),
                                      close(sample(torch.tensor([250.0, 250.0])), 1e-5)),
    "attention_quadrants index past the last": (lambda: quadrants(index=2), refused("index", "<= 1")),
    "attention_quadrants index -1": (lambda: quadrants(index=-1), refused("index", ">= 0")),
    "attention_quadrants NaN states": (lambda: quadrants(states=nan_at(STATES)), refused("encoder_hidden_states", "NaN")),
    "attention_quadrants numpy index, the last block": (
        lambda: quadrants(index=np.int64(1)),
        accepted(lambda q: q.text_to_image.shape == (2, 2, 5, 64)
                 and torch.allclose(q.text_to_image.sum(-1) + q.text_to_text.sum(-1), torch.ones(2, 2, 5)))),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_probe(probe):
    call, expect = PROBES[probe]
    with torch.no_grad():
        expect(call)
