"""CLIP on the shapes world: the hand-written loss against CLIPModel's, positives, pooling, zero-shot, LiT,
the text tower inside a diffusers StableDiffusionPipeline, and the shipped checkpoints."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from course_lib import checkpoints, clip, shapes, text, training
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return text.build_tokenizer()


@pytest.fixture(scope="module")
def fresh(tokenizer):
    return clip.make_clip(tokenizer, seed=0).eval()


def _batch(tokenizer, n=24, seed=0, twins=False):
    return clip.caption_batches(tokenizer, n, twins=twins)(torch.Generator().manual_seed(seed))


def test_hand_written_loss_equals_clipmodel_loss(tokenizer, fresh, worst):
    with torch.no_grad():
        fresh.logit_scale.fill_(2.0)  # a temperature other than the initial one
        batch = _batch(tokenizer)
        out = fresh(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"], return_loss=True)
        logits = clip.similarity_logits(fresh, batch["input_ids"], batch["pixel_values"])
        ours = clip.contrastive_loss(logits)
        # an independent oracle: two cross-entropies with integer targets
        target = torch.arange(len(logits))
        oracle = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    worst("clip: contrastive_loss vs CLIPModel(return_loss=True)", (ours - out.loss).abs())
    assert torch.allclose(logits, out.logits_per_text, atol=1e-5)
    assert torch.allclose(ours, out.loss, atol=1e-6) and torch.allclose(ours, oracle, atol=1e-6)
    fresh.logit_scale.data.fill_(clip.LOGIT_SCALE_INIT)
    assert clip.clip_loss(fresh, batch, multi_positive=False).item() == pytest.approx(
        fresh(**{k: batch[k] for k in ("input_ids", "pixel_values")}, return_loss=True).loss.item(), abs=1e-6)


def _multi_positive_oracle(logits, positives):
    # row by row: minus the mean log-probability of the positives, for texts and for images
    rows = [-(logits[i].log_softmax(0)[positives[i]]).mean() for i in range(len(logits))]
    cols = [-(logits[:, j].log_softmax(0)[positives[:, j]]).mean() for j in range(len(logits))]
    return (torch.stack(rows).mean() + torch.stack(cols).mean()) / 2


def test_multi_positive_loss(tokenizer, fresh):
    g = torch.Generator().manual_seed(3)
    logits = 5 * torch.randn(10, 10, generator=g)
    eye = torch.eye(10, dtype=torch.bool)
    assert clip.multi_positive_contrastive_loss(logits, eye).item() == pytest.approx(clip.contrastive_loss(logits).item(), abs=1e-6)
    positives = eye | (torch.rand(10, 10, generator=g) < 0.2)
    assert clip.multi_positive_contrastive_loss(logits, positives).item() == pytest.approx(
        _multi_positive_oracle(logits, positives).item(), abs=1e-5)
    # Exact duplicate captions have identical embeddings, and then the plain loss IS the
    # multi-positive loss (same value, same gradient): only captions that differ but are both true
    # (a caption without background, a relation) make the two losses differ.
    scene = shapes.Scene((shapes.ShapeObject("circle", "red", 1, 0),), "black")
    other = shapes.Scene((shapes.ShapeObject("circle", "red", 1, 0, dx=0.02),), "white")
    third = shapes.Scene((shapes.ShapeObject("square", "blue", 0, 2),), "grey")
    scenes = [scene, other, third]
    same = ["a red circle on the left"] * 2 + [shapes.caption(third)]
    ids, images = text.tokenize(same, tokenizer), shapes.render(scenes)
    with torch.no_grad():
        s = clip.similarity_logits(fresh, ids, images)
        p = clip.same_caption(ids)
        assert p.sum() == 5 and clip.true_captions(scenes, same).T.equal(p)
        assert clip.multi_positive_contrastive_loss(s, p).item() == pytest.approx(clip.contrastive_loss(s).item(), abs=1e-6)
        varied = [shapes.caption(scene, "full"), "a red circle on the left", shapes.caption(third)]
        ids = text.tokenize(varied, tokenizer)
        s = clip.similarity_logits(fresh, ids, images)
        positives = clip.true_captions(scenes, varied)
        assert positives.tolist() == [[True, True, False], [False, True, False], [False, False, True]]
        assert abs(clip.multi_positive_contrastive_loss(s, positives.T) - clip.contrastive_loss(s)) > 1e-3


def test_true_captions_reads_every_phrasing():
    a = shapes.ShapeObject("circle", "red", 1, 0)
    b = shapes.ShapeObject("square", "blue", 1, 2)
    c = shapes.ShapeObject("square", "blue", 0, 2)  # above-right of a: still "to the left of" in the relation
    scenes = [shapes.Scene((a, b), "black"), shapes.Scene((a, c), "white"), shapes.Scene((b,), "black")]
    captions = [shapes.caption(scenes[0], "relation"), shapes.caption(scenes[1], "objects"), shapes.caption(scenes[2], "full")]
    p = clip.true_captions(scenes, captions)
    assert captions[0] == "a red circle to the left of a blue square"
    assert p.tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    with pytest.raises(CourseInputError, match="does not describe"):
        clip.true_captions(scenes, captions[::-1])


def test_twin_batches(tokenizer):
    g = torch.Generator().manual_seed(0)
    scenes, captions = clip.twin_scenes(shapes.sample_scenes(40, seed=2), g)
    for s, t, cs, ct in zip(scenes[::2], scenes[1::2], captions[::2], captions[1::2]):
        assert s != t and cs == shapes.captions(s)[next(p for p, c in shapes.captions(s).items() if c == cs)]
        assert not set(t.pairs()) & set(shapes.HELDOUT_PAIRS)  # twins never show a held-out pair
    batch = _batch(tokenizer, 16, twins=True)
    assert batch["input_ids"].shape == (16, text.MAX_LENGTH) and batch["pixel_values"].shape == (16, 3, 32, 32)
    assert batch["positives"].diagonal().all()
    with pytest.raises(CourseInputError, match="even"):
        clip.caption_batches(tokenizer, 15)


def test_pooling_at_the_end_token_and_the_eos_id_2_trap(tokenizer, fresh):
    from transformers import CLIPTextModel

    encoder = text.text_encoder_of(fresh)
    assert isinstance(encoder, CLIPTextModel) and encoder.config.eos_token_id == text.EOS_ID
    ids = text.tokenize(["a red circle on the left", "a yellow triangle at the top, on a white background"], tokenizer)
    with torch.no_grad():
        out = encoder(ids)
        eos_at = (ids == text.EOS_ID).int().argmax(1)
        assert torch.equal(out.pooler_output, out.last_hidden_state[torch.arange(2), eos_at])
        trap = CLIPTextModel(encoder.config.__class__(**{**encoder.config.to_dict(), "eos_token_id": 2})).eval()
        trap.load_state_dict(encoder.state_dict())
        pooled = trap(ids).pooler_output  # pools at argmax(ids): the word with the largest id, not the end
    assert not torch.allclose(pooled, out.pooler_output)
    assert torch.equal(pooled, out.last_hidden_state[torch.arange(2), ids.argmax(1)])


def test_zero_shot_helpers(tokenizer, fresh):
    from sklearn.metrics import confusion_matrix

    assert len(clip.single_object_candidates("full").captions) == 4 * 3 * 9 * 3
    assert len(set(clip.single_object_candidates("objects").captions)) == 4 * 3 * 9
    scenes = shapes.sample_scenes(60, seed=4, split="test", num_objects=1)
    result = clip.zero_shot(fresh, tokenizer, scenes)
    assert set(result.accuracy) == {"colour", "shape", "position", "background", "full"}
    assert result.num_candidates == 324 and len(result.predicted_captions) == 60
    for attribute in ("colour", "shape", "position", "background"):
        k = len(clip.attribute_values(attribute))
        expected = confusion_matrix(result.truth[attribute], result.predicted[attribute], labels=list(range(k)))
        assert result.confusion(attribute).tolist() == expected.tolist()
        assert result.accuracy[attribute] == pytest.approx(expected.trace() / 60)
    ranked = clip.rank_captions(fresh, tokenizer, shapes.render(scenes[0]), ["a red circle", "a blue square", "a"], top=2)
    assert len(ranked) == 2 and ranked[0][1] >= ranked[1][1]
    with pytest.raises(CourseInputError, match="exactly one object"):
        clip.zero_shot(fresh, tokenizer, shapes.sample_scenes(3, num_objects=2))


def test_text_embeddings_drop_shared_padding_without_changing_anything(tokenizer, fresh):
    captions = clip.single_object_candidates().captions[:40] + ["a red circle", "a"]
    with torch.no_grad():
        full = clip.embed_texts(fresh, text.tokenize(captions, tokenizer))  # all L = 32 positions
    assert torch.allclose(clip.text_embeddings(fresh, tokenizer, captions, batch_size=16), full, atol=1e-6)


def test_swap_candidates():
    a = shapes.ShapeObject("circle", "red", 0, 0)
    b = shapes.ShapeObject("square", "blue", 2, 2)
    scene = shapes.Scene((a, b), "grey")
    assert clip.swap_candidates(scene, "colour")[0] == shapes.caption(scene)
    assert len(clip.swap_candidates(scene, "colour")) == 1 + 2 * 3
    assert len(clip.swap_candidates(scene, "shape")) == 1 + 2 * 2
    assert len(clip.swap_candidates(scene, "position")) == 1 + 2 * 7
    assert len(clip.swap_candidates(scene, "background")) == 3
    assert clip.swap_candidates(scene, "binding")[1] == "a blue circle in the top left and a red square in the bottom right, on a grey background"
    assert len(clip.swap_candidates(shapes.Scene((a,), "grey"), "binding")) == 1


def test_short_training_lowers_the_loss_and_lit_keeps_the_tower(tokenizer):
    model = clip.make_clip(tokenizer, seed=1)
    config = training.TrainConfig(steps=25, batch_size=32, lr=2e-3, ema_decay=0.0, seed=0)
    state = clip.train_clip(model, tokenizer, config, progress=False)
    assert sum(state.losses[-5:]) / 5 < sum(state.losses[:5]) / 5
    tower = model.vision_model
    lit = clip.lit_model(tower, tokenizer, seed=2)
    assert clip.num_trainable(lit) == sum(p.numel() for p in lit.parameters()) - sum(
        p.numel() for p in lit.vision_model.parameters()) - lit.visual_projection.weight.numel()
    before = {k: v.clone() for k, v in lit.state_dict().items()}
    clip.train_clip(lit, tokenizer, training.TrainConfig(steps=2, batch_size=16, ema_decay=0.0), progress=False)
    after = lit.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("vision_model.", "visual_projection.")))
    assert not torch.equal(before["text_projection.weight"], after["text_projection.weight"])
    assert torch.equal(after["visual_projection.weight"], torch.eye(clip.PROJECTION_DIM))


def test_scene_classifier_labels_and_loss():
    scenes = [shapes.Scene((shapes.ShapeObject("triangle", "green", 2, 1),), "white")]
    labels = clip.cell_labels(scenes)
    assert labels["colour"][0].tolist() == [4] * 7 + [1, 4] and labels["shape"][0].tolist() == [3] * 7 + [2, 3]
    assert labels["background"].tolist() == [2]
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    model = clip.SceneClassifier(CLIPVisionModel(CLIPVisionConfig(**clip.VISION_CONFIG)))
    batch = clip.labelled_batches(4)(torch.Generator().manual_seed(0))
    loss = clip.scene_classifier_loss(model, batch)
    chance = 2 * torch.log(torch.tensor(5.0 * 4.0)) / 2 + torch.log(torch.tensor(3.0))
    assert loss.ndim == 0 and 0.5 * chance < loss < 2 * chance


def test_text_encoder_and_tokenizer_load_in_a_stable_diffusion_pipeline(tokenizer, fresh, tmp_path):
    """The folder layout of notebook 06: the CLIP text tower and the course tokenizer inside a diffusers pipeline."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    hidden = fresh.config.text_config.hidden_size
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=hidden,
                                attention_head_dim=2, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text.text_encoder_of(fresh), tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(clip_sample=False), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path)
    loaded = StableDiffusionPipeline.from_pretrained(tmp_path, local_files_only=True)
    assert loaded.tokenizer.get_vocab() == tokenizer.get_vocab() and loaded.tokenizer.model_max_length == text.MAX_LENGTH
    text.check_tokenizer(loaded.tokenizer)
    prompt = "a red circle on the left, on a white background"
    with torch.no_grad():
        cond, uncond = loaded.encode_prompt(prompt, "cpu", 1, True)
    assert torch.equal(cond, text.encode_prompt(prompt, tokenizer, fresh))
    assert torch.equal(uncond, text.encode_prompt("", tokenizer, fresh))
    assert cond.shape == (1, text.MAX_LENGTH, hidden)
    image = loaded(prompt, num_inference_steps=2, height=16, width=16, output_type="pt",
                   generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 3, 16, 16)
    with pytest.warns(text.UnknownWordWarning, match="'purple'"):
        text.warn_unknown_words("a purple circle", loaded.tokenizer)


# ----------------------------------------------------------------------------------------------
# The shipped checkpoints (data/clip, data/clip_lit)
# ----------------------------------------------------------------------------------------------

SHIPPED = [name for name in ("clip", "clip_lit") if (checkpoints.checkpoint_dir(name) / checkpoints.MANIFEST).is_file()]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_loads_and_classifies_zero_shot(name, tokenizer):
    model, loaded_tokenizer = clip.load(name, device="cpu")  # verifies the SHA-256 of every file
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()  # the vocabulary it was trained with is today's
    manifest = checkpoints.read_manifest(name)
    assert manifest["command"].startswith(f"python -m course_lib.recipes {name}")
    shipped = manifest["metrics"]
    assert shipped["zero_shot_test_single_full"] >= 0.95, shipped
    # recompute the manifest's headline figure: the same 1,000 held-out scenes (clip.evaluate's)
    scenes = shapes.sample_scenes(1000, seed=0, split="test", num_objects=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", text.UnknownWordWarning)
        accuracy = clip.zero_shot(model, tokenizer, scenes).accuracy
    for key in ("colour", "shape", "position", "background", "full"):
        assert accuracy[key] == pytest.approx(shipped[f"zero_shot_test_single_{key}"], abs=0.005), key
    if name == "clip_lit":
        assert manifest["recipe"]["image_tower_pretraining"]["wall_time_s"] > 0
        assert manifest["recipe"]["trainable_parameters"] < manifest["num_parameters"]
        assert torch.equal(model.visual_projection.weight, torch.eye(clip.PROJECTION_DIM))
