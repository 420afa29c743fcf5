"""Cross-attention by hand (eq. 5.4) against diffusers' Attention; recording through the processor API; word maps."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

from course_lib import attention, shapes, text
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


def _layer(seed: int, **kwargs) -> Attention:
    torch.manual_seed(seed)
    layer = Attention(**kwargs)
    with torch.no_grad():  # non-zero biases everywhere, so that a forgotten bias shows
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.eval()


@pytest.mark.parametrize("heads, dim_head, bias", [(1, 16, False), (4, 8, False), (8, 4, True)])
def test_cross_attention_equals_diffusers(heads, dim_head, bias, worst):
    layer = _layer(heads, query_dim=24, cross_attention_dim=40, heads=heads, dim_head=dim_head, bias=bias)
    g = torch.Generator().manual_seed(heads)
    x, c = torch.randn(3, 20, 24, generator=g), torch.randn(3, 7, 40, generator=g)
    w = attention.weights_of(layer)
    with torch.no_grad():
        ours, probs = attention.cross_attention_with_probs(x, c, w)
        for processor in (AttnProcessor2_0(), AttnProcessor()):
            layer.set_processor(processor)
            ref = layer(x, encoder_hidden_states=c)
            worst("attention: cross_attention vs diffusers Attention", (ours - ref).abs().max())
            assert torch.allclose(ours, ref, atol=1e-6)
    assert probs.shape == (3, heads, 20, 7)
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-6)


def test_recording_processor_matches_and_is_removed_on_exit(worst):
    layer = _layer(0, query_dim=16, cross_attention_dim=12, heads=2, dim_head=8)
    original = layer.processor
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(2, 9, 16, generator=g), torch.randn(2, 5, 12, generator=g)
    with torch.no_grad():
        ref = layer(x, encoder_hidden_states=c)
        with attention.record_attention(layer) as store:
            got = layer(x, encoder_hidden_states=c)
        _, probs = attention.cross_attention_with_probs(x, c, attention.weights_of(layer))
    assert layer.processor is original
    worst("attention: recording processor vs diffusers", (got - ref).abs().max())
    assert torch.allclose(got, ref, atol=1e-6)
    assert len(store.probs["attn"]) == 1 and torch.allclose(store.probs["attn"][0], probs, atol=1e-6)
    self_layer = _layer(1, query_dim=16, heads=2, dim_head=8)  # self-attention is kept only when asked
    with torch.no_grad(), attention.record_attention(self_layer) as store:
        self_layer(x)
    assert store.probs == {}
    with torch.no_grad(), attention.record_attention(self_layer, attention.AttentionStore(self_attention=True)) as store:
        self_layer(x)
    assert store.probs["attn"][0].shape == (2, 2, 9, 9)


def test_recording_inside_a_unet_restores_its_processors():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
                                attention_head_dim=2, norm_num_groups=8).eval()
    before = dict(unet.attn_processors)
    cross = [n for n in before if "attn2" in n]
    g = torch.Generator().manual_seed(0)
    latents, context = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 6, 12, generator=g)
    with torch.no_grad():
        ref = unet(latents, 10, encoder_hidden_states=context).sample
        with attention.record_attention(unet, layers=cross) as store:
            got = unet(latents, 10, encoder_hidden_states=context).sample
    assert unet.attn_processors == before
    assert torch.allclose(got, ref, atol=1e-5)
    assert sorted(store.probs) == sorted(cross)
    first = store.probs[cross[0]][0]
    assert first.shape[0] == 1 and first.shape[-1] == 6 and first.shape[2] in (64, 16)
    with pytest.raises(CourseInputError, match="no attention layer"):
        with attention.record_attention(unet, layers=["nope"]):
            pass


def test_word_maps_and_dominant_words():
    tokenizer = text.build_tokenizer()
    reader = attention.colour_reader(tokenizer, {**shapes.COLOURS, **shapes.BACKGROUNDS})
    scene = shapes.Scene((shapes.ShapeObject("square", "red", 0, 0), shapes.ShapeObject("circle", "blue", 2, 2)), "white")
    image = shapes.render(scene)[None]
    ids = text.tokenize(shapes.caption(scene), tokenizer)
    context = torch.nn.functional.one_hot(ids, len(tokenizer)).float()
    with torch.no_grad():
        out, probs = attention.cross_attention_with_probs(attention.pixel_features(image), context,
                                                          attention.weights_of(reader))
    tokens = text.tokens(ids[0], tokenizer)
    pairs = attention.word_maps(probs, tokens, 32, 32)
    assert [t for t, _ in pairs] == tokens[: tokens.index("<|endoftext|>") + 1]  # every token but the padding
    maps = dict(pairs)
    masks = shapes.object_masks(scene, soft=True)  # (2, S, S)
    # pixels fully inside the red square read "red"; the background reads "white"
    inside_red, inside_blue, outside = masks[0] == 1, masks[1] == 1, masks.sum(0) == 0
    assert (maps["red"][inside_red] > 0.99).all() and (maps["blue"][inside_blue] > 0.99).all()
    assert (maps["white"][outside] > 0.99).all()
    dominant = attention.dominant_words(probs, 32, 32)[0]
    assert (dominant[inside_red] == tokens.index("red")).all()
    # the values carry the colours: the output repaints every pure pixel exactly
    repainted = out[0, :, :3].T.reshape(3, 32, 32) * 2 - 1
    pure = inside_red | inside_blue | outside
    assert torch.allclose(repainted[:, pure], image[0][:, pure], atol=1e-5)


def test_bad_input_is_refused():
    layer = _layer(0, query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    w = attention.weights_of(layer)
    with pytest.raises(CourseInputError, match="Flatten"):
        attention.cross_attention(torch.randn(1, 8, 2, 2), torch.randn(1, 3, 6), w)
    with pytest.raises(CourseInputError, match="widths"):
        attention.cross_attention(torch.randn(1, 4, 8), torch.randn(1, 3, 5), w)
    with pytest.raises(CourseInputError, match="plain layer"):
        attention.weights_of(Attention(query_dim=8, heads=2, dim_head=4, residual_connection=True))
    with pytest.raises(CourseInputError, match="N = height"):
        attention.dominant_words(torch.rand(1, 2, 10, 3), 3, 3)
