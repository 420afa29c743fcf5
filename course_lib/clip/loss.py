"""Embeddings on the unit sphere and the contrastive loss, CLIP's and with several right answers.   [CLIP Fig. 3, nb 05]

With unit embeddings u_i = f(image_i) / |f(image_i)| and v_j = g(text_j) / |g(text_j)| and a learned
temperature tau (stored as logit_scale = log(1 / tau)), the logits are S_ij = <v_i, u_j> / tau
(logits_per_text; logits_per_image is its transpose), and CLIP's symmetric InfoNCE loss is

    L = ( CE(S, diag) + CE(S^T, diag) ) / 2.                                   [eq. (5.2), nb 05]
"""

from __future__ import annotations

import torch

from course_lib import noise
from course_lib.clip.model import MAX_LOGIT_SCALE, check_clip_model, check_input_ids, check_pixel_values
from course_lib.validation import CourseInputError, check_finite, check_float_tensor


def _text_features(model, input_ids: torch.Tensor) -> torch.Tensor:
    v = model.get_text_features(input_ids=input_ids).pooler_output
    return v / v.norm(dim=-1, keepdim=True)


def _image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    u = model.get_image_features(pixel_values=pixel_values).pooler_output
    return u / u.norm(dim=-1, keepdim=True)


def embed_texts(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Return unit text embeddings v = g(ids) / |g(ids)|: text tower, pooled at the end token, projected.   Shapes: (B, L) -> (B, P)."""
    check_clip_model(model)
    return _text_features(model, check_input_ids(input_ids, model))


def embed_images(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Return unit image embeddings u = f(x) / |f(x)|: vision tower's class token, projected.   Shapes: (B, 3, S, S) -> (B, P)."""
    check_clip_model(model)
    return _image_features(model, check_pixel_values(pixel_values, model))


def logit_scale(model) -> torch.Tensor:
    """Return 1 / tau = exp(model.logit_scale), clipped at MAX_LOGIT_SCALE = 100 as CLIP does."""
    return check_clip_model(model).logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def similarity_logits(model, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
    """Return logits_per_text S = <v_i, u_j> / tau, as CLIPModel computes them.   [eq. 5.1, nb 05]   Shapes: (Bt, Bi)."""
    check_clip_model(model)
    v = _text_features(model, check_input_ids(input_ids, model))
    u = _image_features(model, check_pixel_values(pixel_values, model))
    return logit_scale(model) * v @ u.T


def _check_logits(logits) -> torch.Tensor:
    check_float_tensor(logits, "logits_per_text")
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1] or not len(logits):
        raise CourseInputError(f"logits must be a square (B, B) matrix with B >= 1, got {tuple(logits.shape)}.")
    return check_finite(logits, "logits_per_text")


def contrastive_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Return CLIP's symmetric InfoNCE loss (CE over rows + CE over columns) / 2 with targets on the diagonal.   [eq. 5.2, nb 05]

    Written out: each row's log-softmax at its diagonal entry, averaged, for S and for S^T.
    """
    _check_logits(logits_per_text)
    diag = torch.arange(len(logits_per_text), device=logits_per_text.device)
    text_to_image = -logits_per_text.log_softmax(dim=1)[diag, diag].mean()  # each text picks its image
    image_to_text = -logits_per_text.log_softmax(dim=0)[diag, diag].mean()  # each image picks its text
    return (text_to_image + image_to_text) / 2


def same_caption(input_ids: torch.Tensor) -> torch.Tensor:
    """Return P (B, B) bool: P_ij = True when texts i and j have the same ids (the same caption). The diagonal is True."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point():
        got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise CourseInputError(f"input_ids must be an integer tensor (B, L) (text.tokenize's output), got {got}.")
    return (input_ids[:, None, :] == input_ids[None, :, :]).all(-1)


def multi_positive_contrastive_loss(logits_per_text: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Return the symmetric contrastive loss with several right answers per row.   [eq. 5.3, nb 05]

    Each row's target is spread evenly over its positives: CE with soft targets P_ij / sum_j P_ij,
    for S and for S^T. With P the identity it is contrastive_loss exactly.
    Shapes: logits (B, B), positives (B, B) bool with a True diagonal.
    """
    _check_logits(logits_per_text)
    if not isinstance(positives, torch.Tensor) or positives.shape != logits_per_text.shape \
            or positives.dtype != torch.bool:
        raise CourseInputError(f"positives must be a bool matrix of the logits' shape {tuple(logits_per_text.shape)}.")
    if not positives.diagonal().all():
        raise CourseInputError("every pair is its own positive: positives must have a True diagonal.")
    targets = positives.to(logits_per_text.dtype)
    text_to_image = -(targets / targets.sum(1, keepdim=True) * logits_per_text.log_softmax(dim=1)).sum(1).mean()
    image_to_text = -(targets / targets.sum(0, keepdim=True) * logits_per_text.log_softmax(dim=0)).sum(0).mean()
    return (text_to_image + image_to_text) / 2


def clip_loss(model, batch: dict, generator=None, *, multi_positive: bool = True) -> torch.Tensor:
    """Return the contrastive loss of a batch {"input_ids", "pixel_values"[, "positives"]}: a loss_fn for training.train.   [nb 05]

    multi_positive=True (default): every true caption of an image is a right answer
    (multi_positive_contrastive_loss with batch["positives"], from true_captions(); without it,
    identical captions, same_caption()); False: CLIP's plain loss, the diagonal only. generator is
    not used (the loss draws nothing); training.train passes one.
    """
    noise.as_generator(generator)
    if not isinstance(batch, dict) or not {"input_ids", "pixel_values"} <= set(batch):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise CourseInputError(f"batch must be a dict with 'input_ids' and 'pixel_values' (and optionally "
                               f"'positives'), as clip.caption_batches makes; got {got}.")
    logits = similarity_logits(model, batch["input_ids"], batch["pixel_values"])
    if not multi_positive:
        return contrastive_loss(logits)
    positives = batch.get("positives")
    if positives is None:
        positives = same_caption(batch["input_ids"])
    elif isinstance(positives, torch.Tensor):
        positives = positives.T  # (images, texts) -> (texts, images)
    return multi_positive_contrastive_loss(logits, positives)
