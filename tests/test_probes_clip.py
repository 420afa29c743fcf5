"""Probes of course_lib.clip: bad and unusual inputs to every public function, each with the expected outcome
(a CourseInputError whose message names what was wrong, or acceptance with the right result): numpy
scalars wherever a number is taken, an int seed wherever a generator is, and no NaN or empty mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import clip, shapes, text, training
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return text.build_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return clip.make_clip(tokenizer, seed=0).eval()


@pytest.fixture(scope="module")
def scenes():
    return shapes.sample_scenes(4, seed=0, split="test", num_objects=1)


@pytest.fixture(scope="module")
def multi():
    return shapes.sample_scenes(3, seed=1, split="test", num_objects=(2, 3))


def _ids(tokenizer, n=3):
    return text.tokenize(["a red circle in the middle"] * n, tokenizer)


def _images(n=3):
    return shapes.render(shapes.sample_scenes(n, seed=2))


# ----------------------------------------------------------------------------------------------
# The model and its config
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 1.5, "64", True, None])
def test_clip_config_refuses_a_bad_projection_dim(tokenizer, bad):
    with pytest.raises(CourseInputError, match="projection_dim"):
        clip.clip_config(tokenizer, projection_dim=bad)


def test_clip_config_takes_numpy_ints_and_checks_overrides(tokenizer):
    assert clip.clip_config(tokenizer, projection_dim=np.int64(32)).projection_dim == 32
    with pytest.raises(CourseInputError, match="text_overrides"):
        clip.clip_config(tokenizer, text_overrides="small")
    with pytest.raises(CourseInputError, match="vision_overrides"):
        clip.clip_config(tokenizer, vision_overrides=[("hidden_size", 32)])
    with pytest.raises(CourseInputError, match="special token ids"):
        clip.clip_config(object())


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_make_clip_refuses_a_bad_seed(tokenizer, bad):
    with pytest.raises(CourseInputError, match="seed"):
        clip.make_clip(tokenizer, seed=bad)


def test_make_clip_takes_a_numpy_seed(tokenizer, model):
    other = clip.make_clip(tokenizer, seed=np.int64(0))
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))


@pytest.mark.parametrize("fn", [clip.logit_scale, clip.lock_image_tower, clip.check_clip_model])
@pytest.mark.parametrize("bad", [None, torch.nn.Linear(2, 2), "clip"])
def test_functions_of_a_clip_model_refuse_anything_else(fn, bad):
    with pytest.raises(CourseInputError, match="CLIPModel"):
        fn(bad)


# ----------------------------------------------------------------------------------------------
# Data: twins, batches, true captions
# ----------------------------------------------------------------------------------------------

def test_twin_scenes_takes_an_int_seed_as_the_same_generator(multi):
    by_seed = clip.twin_scenes(multi, 7)
    by_generator = clip.twin_scenes(multi, torch.Generator().manual_seed(7))
    assert by_seed == by_generator and len(by_seed[0]) == 2 * len(multi)
    assert clip.twin_scenes(multi, np.int64(7)) == by_seed


@pytest.mark.parametrize("kwargs, match", [
    (dict(generator="7"), "generator"),
    (dict(generator=-1), "seed"),
    (dict(kinds={"colour": float("nan")}), "weight of 'colour'"),
    (dict(kinds={"colour": -1.0}), "weight of 'colour'"),
    (dict(kinds={"colour": 0.0}), "no edit a positive weight"),
    (dict(kinds=()), "no edit a positive weight"),
    (dict(kinds=("fly",)), "edit kind"),
    (dict(phrasings=()), "phrasings is empty"),
    (dict(phrasings=("poetic",)), "phrasing"),
])
def test_twin_scenes_refuses_bad_settings(multi, kwargs, match):
    with pytest.raises(CourseInputError, match=match):
        clip.twin_scenes(multi, **kwargs)


def test_twin_scenes_refuses_a_kind_no_scene_takes_and_accepts_edge_cases():
    full = shapes.sample_scenes(1, seed=0, num_objects=3)
    with pytest.raises(CourseInputError, match="takes none of the edit kinds"):
        clip.twin_scenes(full, 0, kinds=("add",))
    assert clip.twin_scenes([], 0) == ([], [])
    out, captions = clip.twin_scenes(full[0], 0, kinds={"colour": np.float32(1.0)})  # one Scene, numpy weight
    assert len(out) == 2 and sum(a.colour != b.colour for a, b in zip(out[0].objects, out[1].objects)) == 1
    with pytest.raises(CourseInputError, match="shapes.Scene"):
        clip.twin_scenes(["a red circle"], 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=1), "batch_size"), (dict(batch_size=3), "even"), (dict(batch_size=True), "batch_size"),
    (dict(batch_size="8"), "batch_size"), (dict(batch_size=8.0), "batch_size"), (dict(split="heldout"), "split"),
    (dict(num_objects=5), "num_objects"), (dict(size=4), "size"), (dict(phrasings=("poem",)), "phrasing"),
])
def test_caption_batches_refuses_bad_settings_at_once(tokenizer, kwargs, match):
    with pytest.raises(CourseInputError, match=match):
        clip.caption_batches(tokenizer, **{"batch_size": 8, **kwargs})


def test_caption_batches_takes_numpy_sizes_and_int_seeds(tokenizer):
    data = clip.caption_batches(tokenizer, np.int64(6), twins=True)
    by_seed, by_generator = data(3), data(torch.Generator().manual_seed(3))
    assert by_seed["input_ids"].shape[0] == 6
    assert all(torch.equal(by_seed[k], by_generator[k]) for k in by_seed)
    with pytest.raises(CourseInputError, match="generator"):
        data("3")
    with pytest.raises(CourseInputError, match="special token ids"):
        clip.caption_batches(None, 8)


def test_true_captions_checks_its_pairs(scenes):
    assert clip.true_captions(scenes[0], shapes.caption(scenes[0])).tolist() == [[True]]
    with pytest.raises(CourseInputError, match="one caption per scene"):
        clip.true_captions(scenes, ["a red circle"])
    with pytest.raises(CourseInputError, match="strings"):
        clip.true_captions(scenes[:1], [3])
    with pytest.raises(CourseInputError, match="empty"):
        clip.true_captions([], [])
    with pytest.raises(CourseInputError, match="does not describe its own scene"):
        clip.true_captions(scenes[:1], ["a blue square in the top left, on a white background"])


# ----------------------------------------------------------------------------------------------
# Embeddings and losses
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make_ids, match", [
    (lambda ids: ids.float(), "integer tensor"),
    (lambda ids: ids.tolist(), "integer tensor"),
    (lambda ids: ids[0], r"shape \(B, L\)"),
    (lambda ids: ids[:0], r"shape \(B, L\)"),
    (lambda ids: torch.cat([ids, ids], 1), r"L <= 32"),
    (lambda ids: ids + 10_000, "outside"),
    (lambda ids: ids - 100, "outside"),
])
def test_embed_texts_refuses_bad_ids(model, tokenizer, make_ids, match):
    with pytest.raises(CourseInputError, match=match):
        clip.embed_texts(model, make_ids(_ids(tokenizer)))


@pytest.mark.parametrize("make_images, match", [
    (lambda x: (x * 127).long(), "floating-point"),
    (lambda x: x[0], r"shape \(B, 3, 32, 32\)"),
    (lambda x: x[:, :1], r"shape \(B, 3, 32, 32\)"),
    (lambda x: torch.nn.functional.interpolate(x, size=16), r"shape \(B, 3, 32, 32\)"),
    (lambda x: x[:0], r"shape \(B, 3, 32, 32\)"),
    (lambda x: x.index_fill(0, torch.tensor([1]), float("nan")), "NaN"),
])
def test_embed_images_refuses_bad_images(model, make_images, match):
    with pytest.raises(CourseInputError, match=match):
        clip.embed_images(model, make_images(_images()))
    with pytest.raises(CourseInputError, match=match):
        clip.similarity_logits(model, _ids(text.build_tokenizer()), make_images(_images()))


def test_embeddings_are_unit_vectors_and_logits_rectangular(model, tokenizer):
    with torch.no_grad():
        v, u = clip.embed_texts(model, _ids(tokenizer, 2)), clip.embed_images(model, _images(5))
        s = clip.similarity_logits(model, _ids(tokenizer, 2), _images(5))
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(5))
    assert s.shape == (2, 5)


@pytest.mark.parametrize("logits, match", [
    ([[1.0, 0.0], [0.0, 1.0]], "torch.Tensor"),
    (torch.eye(3, dtype=torch.long), "floating-point"),
    (torch.zeros(2, 3), "square"),
    (torch.zeros(3), "square"),
    (torch.zeros(0, 0), "B >= 1"),
    (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN"),
    (torch.tensor([[float("inf"), 0.0], [0.0, 1.0]]), "infinite"),
])
def test_the_losses_refuse_bad_logits(logits, match):
    with pytest.raises(CourseInputError, match=match):
        clip.contrastive_loss(logits)
    with pytest.raises(CourseInputError, match=match):
        clip.multi_positive_contrastive_loss(logits, torch.eye(2, dtype=torch.bool))


def test_the_losses_accept_one_pair_and_float64():
    assert clip.contrastive_loss(torch.ones(1, 1)).item() == 0.0
    logits = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = torch.arange(4)
    oracle = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
    assert clip.contrastive_loss(logits).dtype == torch.float64
    torch.testing.assert_close(clip.contrastive_loss(logits), oracle)


@pytest.mark.parametrize("positives, match", [
    (torch.eye(3), "bool matrix"), (torch.eye(2, dtype=torch.bool), "bool matrix"), ("eye", "bool matrix"),
    (torch.zeros(3, 3, dtype=torch.bool), "True diagonal"),
])
def test_multi_positive_loss_refuses_bad_positives(positives, match):
    with pytest.raises(CourseInputError, match=match):
        clip.multi_positive_contrastive_loss(torch.zeros(3, 3), positives)


@pytest.mark.parametrize("bad", [torch.zeros(3, dtype=torch.long), torch.zeros(2, 3), [[1, 2]]])
def test_same_caption_needs_an_integer_matrix(bad):
    with pytest.raises(CourseInputError, match="input_ids"):
        clip.same_caption(bad)


def test_clip_loss_checks_its_batch_and_takes_an_int_seed(model, tokenizer):
    batch = clip.caption_batches(tokenizer, 4)(0)
    with torch.no_grad():
        assert clip.clip_loss(model, batch, 0).item() == clip.clip_loss(model, batch, None).item()
    for bad in ({"input_ids": batch["input_ids"]}, [batch["input_ids"], batch["pixel_values"]], None):
        with pytest.raises(CourseInputError, match="'input_ids' and 'pixel_values'"):
            clip.clip_loss(model, bad)
    with pytest.raises(CourseInputError, match="generator"):
        clip.clip_loss(model, batch, "seed")
    with pytest.raises(CourseInputError, match="bool matrix"):
        clip.clip_loss(model, {**batch, "positives": batch["positives"].tolist()})


# ----------------------------------------------------------------------------------------------
# Zero-shot
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("captions, batch_size, match", [
    ([], 8, "non-empty list of str"), ([1, 2], 8, "non-empty list of str"), (None, 8, "non-empty list of str"),
    (["a red circle"], 0, "batch_size"), (["a red circle"], 1.5, "batch_size"),
])
def test_text_embeddings_refuses_bad_input(model, tokenizer, captions, batch_size, match):
    with pytest.raises(CourseInputError, match=match):
        clip.text_embeddings(model, tokenizer, captions, batch_size=batch_size)


def test_text_and_image_embeddings_accept_one_item_and_numpy_batch_sizes(model, tokenizer):
    one = clip.text_embeddings(model, tokenizer, "a red circle in the middle")
    two = clip.text_embeddings(model, tokenizer, ["a red circle in the middle", "a blue square"], batch_size=np.int64(1))
    assert one.shape == (1, clip.PROJECTION_DIM) and torch.allclose(one[0], two[0], atol=1e-6)
    image = _images(1)[0]
    assert clip.image_embeddings(model, image).shape == (1, clip.PROJECTION_DIM)
    with pytest.raises(CourseInputError, match=r"shape \(B, 3, 32, 32\)"):
        clip.image_embeddings(model, _images(2)[:0])
    with pytest.raises(CourseInputError, match="batch_size"):
        clip.image_embeddings(model, image, batch_size=0)


def test_rank_captions_takes_one_image(model, tokenizer):
    image, captions = _images(1), ["a red circle", "a blue square", "a green triangle"]
    ranked = clip.rank_captions(model, tokenizer, image, captions, top=np.int64(2))
    assert len(ranked) == 2 and ranked[0][1] >= ranked[1][1]
    everything = clip.rank_captions(model, tokenizer, image[0], captions, top=10)
    assert len(everything) == 3 and math.isclose(sum(p for _, p in everything), 1.0, rel_tol=1e-5)
    with pytest.raises(CourseInputError, match="ONE image"):
        clip.rank_captions(model, tokenizer, _images(2), captions)
    with pytest.raises(CourseInputError, match="top"):
        clip.rank_captions(model, tokenizer, image, captions, top=0)
    with pytest.raises(CourseInputError, match="non-empty list of str"):
        clip.rank_captions(model, tokenizer, image, [])


def test_attribute_and_candidate_choices():
    with pytest.raises(CourseInputError, match="attribute"):
        clip.attribute_values("size")
    with pytest.raises(CourseInputError, match="phrasing"):
        clip.single_object_candidates("relation")
    assert len(clip.single_object_candidates("objects").captions) == 4 * 3 * 9


def test_single_object_labels(scenes, multi):
    assert {k: len(v) for k, v in clip.single_object_labels([]).items()} == dict.fromkeys(clip.ATTRIBUTES, 0)
    with pytest.raises(CourseInputError, match="exactly one object"):
        clip.single_object_labels(multi)
    with pytest.raises(CourseInputError, match="shapes.Scene"):
        clip.single_object_labels("a red circle")


@pytest.mark.parametrize("truth, predicted, k, match", [
    (torch.tensor([0, 3]), torch.tensor([0, 1]), 3, "outside 0..2"),
    (torch.tensor([0, -1]), torch.tensor([0, 1]), 3, "outside 0..2"),
    (torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 3, "integer tensor"),
    (torch.tensor([0, 1]), torch.tensor([0]), 3, "one entry per example"),
    (torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), 3, "1-D"),
    (torch.tensor([0, 1]), torch.tensor([0, 1]), 0, "num_classes"),
])
def test_confusion_matrix_refuses_labels_it_cannot_count(truth, predicted, k, match):
    with pytest.raises(CourseInputError, match=match):
        clip.confusion_matrix(truth, predicted, k)


def test_confusion_matrix_counts_with_a_numpy_class_count():
    c = clip.confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), np.int64(3))
    assert c.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_zero_shot_refuses_no_scenes_and_multi_object_scenes(model, tokenizer, scenes, multi):
    with pytest.raises(CourseInputError, match="empty"):
        clip.zero_shot(model, tokenizer, [])
    with pytest.raises(CourseInputError, match="exactly one object"):
        clip.zero_shot(model, tokenizer, multi)
    with pytest.raises(CourseInputError, match="size"):
        clip.zero_shot(model, tokenizer, scenes, size=4)
    result = clip.zero_shot(model, tokenizer, scenes[0])  # one Scene
    assert set(result.accuracy) == set(clip.ATTRIBUTES) | {"full"}
    assert result.confusion("colour").sum() == 1
    with pytest.raises(CourseInputError, match="attribute"):
        result.confusion("size")


def test_swap_candidates_and_accuracy_check_their_input(model, tokenizer, multi):
    with pytest.raises(CourseInputError, match="swap kind"):
        clip.swap_candidates(multi[0], "size")
    with pytest.raises(CourseInputError, match="one shapes.Scene"):
        clip.swap_candidates(multi, "colour")
    with pytest.raises(CourseInputError, match="phrasing"):
        clip.swap_candidates(multi[0], "colour", phrasing="poem")
    with pytest.raises(CourseInputError, match="empty"):
        clip.swap_accuracy(model, tokenizer, [])
    with pytest.raises(CourseInputError, match="swap kind"):
        clip.swap_accuracy(model, tokenizer, multi, kinds=("size",))
    one = clip.swap_accuracy(model, tokenizer, multi, kinds="colour")  # one kind as a str
    assert list(one) == ["colour"] and 0 <= one["colour"] <= 1
    single = shapes.sample_scenes(2, seed=0, num_objects=1)  # no binding swap exists: NaN, said in the docstring
    assert math.isnan(clip.swap_accuracy(model, tokenizer, single, kinds=("binding",))["binding"])


@pytest.mark.parametrize("kwargs, match", [(dict(num_scenes=1), "num_scenes"), (dict(num_scenes=2.5), "num_scenes"),
                                           (dict(seed=-1), "seed"), (dict(seed="0"), "seed")])
def test_evaluate_refuses_bad_sizes_and_seeds(model, tokenizer, kwargs, match):
    with pytest.raises(CourseInputError, match=match):
        clip.evaluate(model, tokenizer, **kwargs)


# ----------------------------------------------------------------------------------------------
# LiT
# ----------------------------------------------------------------------------------------------

def test_cell_labels_and_the_scene_classifier_check_their_input(scenes):
    assert clip.cell_labels([])["colour"].shape == (0, clip.NUM_CELLS)
    with pytest.raises(CourseInputError, match="shapes.Scene"):
        clip.cell_labels([1, 2])
    with pytest.raises(CourseInputError, match="CLIPVisionModel"):
        clip.SceneClassifier(torch.nn.Linear(2, 2))
    with pytest.raises(CourseInputError, match="SceneClassifier"):
        clip.scene_classifier_loss(torch.nn.Linear(2, 2), {})
    with pytest.raises(CourseInputError, match="SceneClassifier"):
        clip.classifier_accuracy(torch.nn.Linear(2, 2), scenes)


def test_labelled_batches_check_sizes_and_take_int_seeds():
    for kwargs, match in ((dict(batch_size=0), "batch_size"), (dict(batch_size=2, split="heldout"), "split"),
                          (dict(batch_size=2, size=3), "size")):
        with pytest.raises(CourseInputError, match=match):
            clip.labelled_batches(**kwargs)
    data = clip.labelled_batches(np.int64(3))
    a, b = data(5), data(torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a) and a["pixel_values"].shape[0] == 3


def test_lit_pieces_refuse_what_they_cannot_lock(model, tokenizer):
    with pytest.raises(CourseInputError, match="CLIPVisionModel"):
        clip.lit_model(model, tokenizer)  # a whole CLIPModel, not its vision tower
    from transformers import CLIPVisionConfig, CLIPVisionModel

    narrow = CLIPVisionModel(CLIPVisionConfig(**{**clip.VISION_CONFIG, "hidden_size": 32, "intermediate_size": 64}))
    with pytest.raises(CourseInputError, match="PROJECTION_DIM"):
        clip.lit_model(narrow, tokenizer)
    deeper = CLIPVisionModel(CLIPVisionConfig(**{**clip.VISION_CONFIG, "num_hidden_layers": 4}))
    with pytest.raises(CourseInputError, match="do not match"):
        clip.lit_model(deeper, tokenizer)
    with pytest.raises(CourseInputError, match="nn.Module"):
        clip.num_trainable("model")
    with pytest.raises(CourseInputError, match="seed"):
        clip.pretrain_image_tower(seed=-1)
    with pytest.raises(CourseInputError, match="TrainConfig"):
        clip.pretrain_image_tower({"steps": 10})


def test_train_clip_checks_model_and_config(model, tokenizer):
    with pytest.raises(CourseInputError, match="TrainConfig"):
        clip.train_clip(model, tokenizer, {"steps": 1})
    with pytest.raises(CourseInputError, match="CLIPModel"):
        clip.train_clip(torch.nn.Linear(2, 2), tokenizer, training.TrainConfig(steps=1))


# ----------------------------------------------------------------------------------------------
# The shipped checkpoints
# ----------------------------------------------------------------------------------------------

def test_load_refuses_what_is_not_a_clip_checkpoint_before_loading_it():
    with pytest.raises(CourseInputError, match="not a CLIP checkpoint"):
        clip.load("vae", device="cpu")
    with pytest.raises(CourseInputError, match="no checkpoint manifest"):
        clip.load("no_such_clip", device="cpu")
    with pytest.raises(CourseInputError, match="a checkpoint is a name"):
        clip.load(None)
    with pytest.raises(CourseInputError, match="no checkpoint manifest"):
        clip.shipped_figures("no_such_clip")
    with pytest.raises(CourseInputError, match="special token ids"):
        clip.recipe_info(None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_refuses_a_device_the_machine_lacks():
    with pytest.raises(CourseInputError, match="no CUDA device"):
        clip.load("clip", device="cuda")
