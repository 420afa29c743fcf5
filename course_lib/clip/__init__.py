"""A small CLIP trained on the shapes world: the contrastive loss, zero-shot classification, and LiT.   [notebook 05]

CLIP (Radford et al. 2021) trains an image tower f and a text tower g so that an image and its
caption land close together on the unit sphere. For a batch of N pairs, with unit embeddings
u_i = f(image_i) / |f(image_i)| and v_j = g(text_j) / |g(text_j)| and a learned temperature tau
(stored as logit_scale = log(1 / tau)), the logits are

    s_ij = <v_i, u_j> / tau          (logits_per_text; logits_per_image is its transpose)

and the symmetric InfoNCE loss averages two cross-entropies: each text must pick its image among
the N images, and each image its text among the N texts (CLIP's paper, Fig. 3):

    L = ( CE(S, diag) + CE(S^T, diag) ) / 2.                                   [eq. (5.2), nb 05]

`contrastive_loss` is that, written by hand; tests/test_clip.py checks it equals CLIPModel's own
loss (return_loss=True) on the same batch. On a small caption space a batch holds the same caption
several times; the plain loss then calls a perfect match a mistake (a "false negative").
`multi_positive_contrastive_loss` lets every row have several right answers (eq. 5.3).

The model is transformers' CLIPModel built from a CLIPConfig (TEXT_CONFIG, VISION_CONFIG): a
vision transformer on 32x32 scenes (4x4 patches) and a causal text transformer over the course
tokenizer's ids (course_lib.text). Its text tower, a CLIPTextModel, is the text encoder of the
course's text-to-image pipeline (notebook 06): text.encode_prompt(prompts, tokenizer, model).

Zero-shot classification: embed every candidate caption once, embed the image, pick the caption
with the largest cosine similarity. `zero_shot` does it for single-object scenes against all
4 colours x 3 shapes x 9 positions (x 3 backgrounds) captions and scores each attribute;
`swap_accuracy` does it for scenes with several objects, against captions that differ from the
true one in a single attribute.

LiT (locked-image tuning, Zhai et al. 2022): lock an image tower trained for something else and
train only the text tower to read it. Here the locked tower is a vision transformer first trained
as a supervised classifier of the scene's contents (`pretrain_image_tower`), as LiT locks towers
trained on labelled images. `lit_model` builds the CLIPModel around it.

The package, in the order the notebook meets it:

    model.py      the CLIPModel, its config, and the checks every entry point shares
    data.py       fresh image-caption pairs with edited twins; which captions are true of which scenes
    loss.py       unit embeddings, the logits, the contrastive losses (eqs. 5.1-5.3)
    zero_shot.py  zero-shot classification, confusion matrices, swap accuracies, the shipped figures
    lit.py        LiT: the supervised image tower, locked
    shipped.py    the training settings, loading the shipped checkpoints and their records
"""

from course_lib.clip.data import TWIN_EDITS, caption_batches, check_scenes, true_captions, twin_scenes
from course_lib.clip.lit import (EMPTY_COLOUR, EMPTY_SHAPE, NUM_CELLS, TOWER_CONFIG, SceneClassifier, cell_labels,
                                 check_train_config, classifier_accuracy, labelled_batches, lit_model, lock_image_tower,
                                 num_trainable, pretrain_image_tower, scene_classifier_loss)
from course_lib.clip.loss import (clip_loss, contrastive_loss, embed_images, embed_texts, logit_scale,
                                  multi_positive_contrastive_loss, same_caption, similarity_logits)
from course_lib.clip.model import (LOGIT_SCALE_INIT, MAX_LOGIT_SCALE, PROJECTION_DIM, TEXT_CONFIG, VISION_CONFIG,
                                   CourseCLIPConfig, check_clip_model, check_input_ids, check_pixel_values, clip_config,
                                   make_clip)
from course_lib.clip.shipped import CLIP_CONFIG, load, recipe_info, shipped_figures, train_clip
from course_lib.clip.zero_shot import (ATTRIBUTES, SWAPS, Candidates, ZeroShot, attribute_values, confusion_matrix,
                                       evaluate, image_embeddings, rank_captions, single_object_candidates,
                                       single_object_labels, swap_accuracy, swap_candidates, text_embeddings, zero_shot)

__all__ = [
    # model
    "TEXT_CONFIG", "VISION_CONFIG", "PROJECTION_DIM", "LOGIT_SCALE_INIT", "MAX_LOGIT_SCALE", "CourseCLIPConfig",
    "clip_config", "make_clip", "check_clip_model", "check_input_ids", "check_pixel_values",
    # data
    "TWIN_EDITS", "twin_scenes", "caption_batches", "true_captions", "check_scenes",
    # loss
    "embed_texts", "embed_images", "logit_scale", "similarity_logits", "contrastive_loss", "same_caption",
    "multi_positive_contrastive_loss", "clip_loss",
    # zero-shot
    "ATTRIBUTES", "SWAPS", "text_embeddings", "image_embeddings", "rank_captions", "Candidates", "attribute_values",
    "single_object_labels", "single_object_candidates", "ZeroShot", "confusion_matrix", "zero_shot",
    "swap_candidates", "swap_accuracy", "evaluate",
    # LiT
    "NUM_CELLS", "EMPTY_COLOUR", "EMPTY_SHAPE", "TOWER_CONFIG", "cell_labels", "SceneClassifier",
    "scene_classifier_loss", "labelled_batches", "classifier_accuracy", "pretrain_image_tower", "lock_image_tower",
    "lit_model", "num_trainable", "check_train_config",
    # shipped
    "CLIP_CONFIG", "train_clip", "recipe_info", "load", "shipped_figures",
]
