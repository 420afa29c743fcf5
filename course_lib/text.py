"""The course's tokenizer and the prompt encoding the Stable Diffusion pipeline does.   [notebook 05]

A text encoder reads integer token ids. The course's tokenizer is a word-level one, built offline
from the shapes world's vocabulary (colours, shapes, positions, backgrounds, the caption words) and a
few extra words, as a `tokenizers` WordLevel model wrapped in transformers' PreTrainedTokenizerFast:
it saves and loads with save_pretrained / from_pretrained like any transformers tokenizer, and
diffusers' StableDiffusionPipeline loads it from a pipeline folder's tokenizer/ (notebook 06).

    "A red circle on the left"  ->  lower-case, split into words and punctuation
                                ->  <|startoftext|> a red circle on the left <|endoftext|> <|pad|> ... (MAX_LENGTH ids)

Special tokens and their ids (SPECIAL_TOKENS):  <|pad|> 0, <|unk|> 1, <|startoftext|> 2, <|endoftext|> 3.
The end token is NOT id 2 on purpose: transformers' CLIPTextModel pools the sentence at
argmax(input_ids) when config.eos_token_id == 2 (a compatibility path for old checkpoints), which is
right only when the end token has the largest id. With eos_token_id = 3 it pools at the first
<|endoftext|>, which is what CLIP means (text_config_kwargs() sets the ids in the model's config).

Stable Diffusion's pipeline pads every prompt to tokenizer.model_max_length (77 for CLIP; MAX_LENGTH
here), truncates longer ones, passes no attention mask, and encodes "" for the unconditional branch
of classifier-free guidance. `tokenize` and `encode_prompt` do exactly that, so that what a model is
trained with is what the pipeline feeds it, with one difference: a prompt longer than the limit is
refused (check_prompt_lengths) unless truncation=True asks for the pipeline's silent cut.

A word outside the vocabulary becomes <|unk|>, and `tokenize` / `encode_prompt` warn naming it
(UnknownWordWarning): the pipeline itself would drop its meaning in silence. Call `unknown_words`
before handing a prompt to a diffusers pipeline.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from course_lib import shapes
from course_lib.validation import CourseInputError, check_int

PAD, UNK, BOS, EOS = "<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3: the end token is not 2 (see the module docstring)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))

# Every caption of the shapes world has at most 28 words and commas (three objects in the
# "full" phrasing) + 2 special tokens = 30; tests/test_text.py checks that none is truncated.
MAX_LENGTH = 32

# Words the captions and edit instructions of course_lib.shapes use, besides the colour, shape, background
# and position words, which come from course_lib.shapes's tables.
CAPTION_WORDS = (",", "a", "above", "an", "and", "at", "background", "empty", "in", "of", "on", "the", "to", "with",
                 "make", "turn", "into", "remove", "add")
# A few words that no caption uses: in the vocabulary (so not unknown) but never trained.
EXTRA_WORDS = (".", "photo", "picture", "scene", "shape")


def course_words() -> list[str]:
    """Return the course vocabulary's words (no special tokens), sorted: the shapes world's words and a few extra."""
    position_words = {w for phrase in shapes.POSITION_PHRASES.values() for w in phrase.split()}
    words = (set(CAPTION_WORDS) | set(EXTRA_WORDS) | set(shapes.COLOURS) | set(shapes.SHAPES)
             | set(shapes.BACKGROUNDS) | position_words)
    return sorted(words)


def vocabulary(words: Sequence[str] | None = None) -> dict[str, int]:
    """Return {token: id}: the special tokens at 0..3, then the words (course_words() by default) in order."""
    words = course_words() if words is None else list(words)
    clash = [w for w in words if w in SPECIAL_TOKENS]
    if clash or len(set(words)) != len(words):
        raise CourseInputError(f"words must be distinct and not special tokens; got duplicates or {clash}.")
    return {token: i for i, token in enumerate(list(SPECIAL_TOKENS) + words)}


def build_tokenizer(words: Sequence[str] | None = None, max_length: int = MAX_LENGTH):
    """Return the course tokenizer: a word-level PreTrainedTokenizerFast that pads/truncates to max_length.   [nb 05]

    Normalisation: Unicode NFKC and lower case; words are runs of letters/digits, and each
    punctuation run is a token of its own (tokenizers' Whitespace pre-tokenizer, regex \\w+|[^\\w\\s]+).
    Every sequence is <|startoftext|> words <|endoftext|>; truncation keeps the end token.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    max_length = check_int(max_length, "max_length", minimum=3, hint="start, one word, end")
    vocab = vocabulary(words)
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}", special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)])
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, "circle ," -> "circle,"
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, unk_token=UNK, bos_token=BOS,
                                   eos_token=EOS, model_max_length=max_length, padding_side="right",
                                   truncation_side="right")


def load_tokenizer(folder):
    """Load a tokenizer saved with save_pretrained (e.g. a pipeline folder's tokenizer/) and check its special ids."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    check_tokenizer(tokenizer)
    return tokenizer


def check_tokenizer(tokenizer) -> None:
    """Raise unless the tokenizer has the course's special tokens at the course's ids (end token not id 2)."""
    got = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("pad", "unk", "bos", "eos")}
    want = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID}
    if got != want:
        raise CourseInputError(f"the tokenizer's special token ids are {got}, the course's are {want}; "
                               f"build it with text.build_tokenizer().")


def text_config_kwargs(tokenizer) -> dict:
    """Return the CLIPTextConfig fields that must agree with the tokenizer: vocab size, length and special ids.   [nb 05]

    pad/bos/eos ids are set explicitly; eos_token_id is 3, so CLIPTextModel pools at the first end
    token, not at argmax(input_ids) (its path for eos_token_id == 2).
    """
    check_tokenizer(tokenizer)
    return {"vocab_size": len(tokenizer), "max_position_embeddings": tokenizer.model_max_length,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


# ----------------------------------------------------------------------------------------------
# Unknown words: visible, never silent
# ----------------------------------------------------------------------------------------------

class UnknownWordWarning(UserWarning):
    """A prompt word the tokenizer does not know; it was encoded as <|unk|>."""


def _warn_every_time(message: str, stacklevel: int) -> None:
    # warnings.warn shows a message once per call site under the "default" filter; warn_explicit
    # without a registry shows it every time (filters that say "ignore" or "error" still apply).
    # The warning names the first caller outside course_lib (the learner's cell), not our internals
    # nor the torch.no_grad wrappers around them.
    frame = sys._getframe(stacklevel)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(("course_lib.", "torch.")):
        frame = frame.f_back
    warnings.warn_explicit(message, UnknownWordWarning, frame.f_code.co_filename, frame.f_lineno,
                           module=frame.f_globals.get("__name__"), registry=None)


def as_prompts(prompts) -> list[str]:
    """Return prompts as a non-empty list of str (one str becomes a list of one), else raise saying what to pass."""
    if isinstance(prompts, str):
        return [prompts]
    try:
        prompts = list(prompts)
    except TypeError:
        prompts = None
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise CourseInputError("prompts must be a str or a non-empty list of str, e.g. ['a red circle in the middle']; "
                               "use '' for the unconditional prompt.")
    return prompts


def unknown_words(prompts, tokenizer) -> list[list[str]]:
    """Return, for each prompt, the words (as typed) that the tokenizer maps to its unknown token."""
    prompts = as_prompts(prompts)
    enc = tokenizer(prompts, add_special_tokens=False, return_offsets_mapping=True)
    return [[prompt[a:b] for i, (a, b) in zip(ids, offsets) if i == tokenizer.unk_token_id]
            for prompt, ids, offsets in zip(prompts, enc["input_ids"], enc["offset_mapping"])]


def known_words(tokenizer) -> list[str]:
    """Return the words the tokenizer knows (its vocabulary without the special tokens), in id order."""
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens)
    return [w.replace("</w>", "") for w, _ in sorted(vocab.items(), key=lambda item: item[1]) if w not in special]


def warn_unknown_words(prompts, tokenizer, stacklevel: int = 2) -> list[list[str]]:
    """Warn once (UnknownWordWarning) naming the unknown words of the prompts and the known ones; return unknown_words().

    One warning per call, however many prompts hold unknown words (a batch often repeats one prompt);
    it is shown every time the call is made (a notebook cell run twice warns twice).
    """
    found = unknown_words(prompts, tokenizer)
    bad = {prompt: words for prompt, words in zip(as_prompts(prompts), found) if words}
    if bad:
        names = ", ".join(repr(w) for w in dict.fromkeys(w for words in bad.values() for w in words))
        where = next(iter(bad)) if len(bad) == 1 else f"{len(bad)} prompts, e.g. {next(iter(bad))!r}"
        where = f"the prompt {where!r}" if len(bad) == 1 else where
        _warn_every_time(f"unknown word(s) {names} in {where}: encoded as {tokenizer.unk_token}, so the model cannot "
                         f"read them and draws something else. The words it knows: "
                         f"{', '.join(w for w in known_words(tokenizer) if w.isalpha())}.",
                         stacklevel + 1)
    return found


# ----------------------------------------------------------------------------------------------
# Tokenize and encode, the way StableDiffusionPipeline.encode_prompt does
# ----------------------------------------------------------------------------------------------

def check_prompt_lengths(prompts, tokenizer, *, max_length: int | None = None) -> list[str]:
    """Return the prompts (as_prompts) if each fits the tokenizer's length with its start and end tokens, else raise.   [nb 05]

    A longer prompt would lose its tail: the SD pipeline truncates it (and only logs a line), and a
    tokenizer called without truncation triggers transformers' note about "indexing errors", which is
    not what happens. The course refuses instead, naming the prompt, its token count and the limit
    (max_length: tokenizer.model_max_length unless given).
    """
    prompts = as_prompts(prompts)
    limit = tokenizer.model_max_length if max_length is None else max_length
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=True, verbose=False).input_ids]
    for prompt, n in zip(prompts, lengths):
        if n > limit:
            shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
            raise CourseInputError(f"the prompt {shown!r} is {n} tokens long with its start and end tokens; this "
                                   f"tokenizer reads at most {limit}, so the words past the limit would be dropped "
                                   f"without a word. Shorten the prompt (or pass truncation=True to cut it as "
                                   f"StableDiffusionPipeline does).")
    return prompts


def tokenize(prompts, tokenizer, *, max_length: int | None = None, truncation: bool = False) -> torch.Tensor:
    """Return input_ids (B, L), padded to L = tokenizer.model_max_length, as the SD pipeline calls the tokenizer.   [nb 05]

    tokenizer(prompts, padding="max_length", max_length=L, truncation=True); warns naming unknown words.
    A prompt longer than L is refused (check_prompt_lengths) unless truncation=True, which cuts it to
    L tokens keeping the end token, as StableDiffusionPipeline does.
    """
    prompts = as_prompts(prompts)
    max_length = tokenizer.model_max_length if max_length is None else max_length
    if not truncation:
        check_prompt_lengths(prompts, tokenizer, max_length=max_length)
    warn_unknown_words(prompts, tokenizer, stacklevel=2)
    return tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                     return_tensors="pt").input_ids


def tokens(input_ids: torch.Tensor, tokenizer) -> list[str]:
    """Return the token strings of one row of ids, e.g. ['<|startoftext|>', 'a', 'red', ...]."""
    ids = torch.as_tensor(input_ids)
    if ids.ndim != 1:
        raise CourseInputError(f"tokens() takes one sequence of ids (L,), got shape {tuple(ids.shape)}.")
    return tokenizer.convert_ids_to_tokens(ids.tolist())


def text_encoder_of(model):
    """Return the CLIPTextModel inside a CLIPModel (transformers 5: model.text_model), or the model itself."""
    from transformers import CLIPModel, CLIPTextModel

    if isinstance(model, CLIPModel):
        return model.text_model
    if isinstance(model, CLIPTextModel):
        return model
    raise CourseInputError(f"expected a CLIPModel or CLIPTextModel, got {type(model).__name__}.")


def truncate_text_encoder(text_encoder, num_layers: int):
    """Return a new CLIPTextModel: the first num_layers transformer layers of text_encoder, then its final layer norm.   [nb 06]

    Which layer of the text encoder the UNet reads is a design choice: Stable Diffusion 2 ships its
    OpenCLIP text tower cut to 23 of its 24 layers (the "penultimate layer"), and SD 1.x users
    choose it per call as `clip_skip`. Cutting the model, rather than skipping at call time, keeps
    the choice inside the saved text_encoder/ folder, so StableDiffusionPipeline reads the same
    layer without being told. num_layers = 0 leaves token + position embeddings only (with the final
    layer norm); num_layers = the full depth is an exact copy. Weights are copied, the input is untouched.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    encoder = text_encoder_of(text_encoder)
    depth = encoder.config.num_hidden_layers
    is_int = isinstance(num_layers, (int, np.integer)) and not isinstance(num_layers, (bool, np.bool_))
    if not is_int or not 0 <= num_layers <= depth:
        raise CourseInputError(f"num_layers must be an int from 0 to the encoder's {depth} layers, got {num_layers!r}.")
    num_layers = int(num_layers)
    config = CLIPTextConfig(**{**encoder.config.to_dict(), "num_hidden_layers": num_layers})
    out = CLIPTextModel(config).to(device=encoder.device, dtype=encoder.dtype)
    missing, _ = out.load_state_dict(encoder.state_dict(), strict=False)  # the dropped layers are 'unexpected'
    if missing:  # cannot happen for a CLIPTextModel; a guard against a changed class
        raise CourseInputError(f"the truncated encoder lacks weights for {missing[:3]}; is this a CLIPTextModel?")
    return out.eval()


def text_encoder_with_projection(clip_model, num_layers: int | None = None):
    """Return a CLIPTextModelWithProjection: clip_model's text tower (its first num_layers layers) and text_projection.   [SD3, nb 10]

    Stable Diffusion 3 reads two CLIP text encoders of this class: their token states and the projected
    pooled embedding (encode_prompt_pooled). The course builds its two from its own CLIPModels (data/clip,
    data/clip_lit, nb 05), cut like truncate_text_encoder so that the folder says which layer is read.
    Weights are copied; text_embeds equal clip_model.get_text_features for the full depth. Frozen, eval mode.
    """
    from transformers import CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection

    if not isinstance(clip_model, CLIPModel):
        raise CourseInputError(f"clip_model must be a CLIPModel (clip.load()), got {type(clip_model).__name__}.")
    depth = clip_model.config.text_config.num_hidden_layers
    num_layers = depth if num_layers is None else num_layers
    is_int = isinstance(num_layers, (int, np.integer)) and not isinstance(num_layers, (bool, np.bool_))
    if not is_int or not 1 <= num_layers <= depth:
        raise CourseInputError(f"num_layers must be an int from 1 to the tower's {depth} layers (SD3 reads the "
                               f"penultimate hidden state, which a 0-layer tower does not have), got {num_layers!r}.")
    config = {**clip_model.config.text_config.to_dict(), "num_hidden_layers": int(num_layers),
              "projection_dim": clip_model.config.projection_dim}  # the text_config's own projection_dim is a default
    config.pop("architectures", None)
    encoder = CLIPTextModelWithProjection(CLIPTextConfig(**config)).to(clip_model.device, clip_model.dtype)
    state = {k: v for k, v in clip_model.state_dict().items() if k.startswith(("text_model.", "text_projection."))}
    missing, _ = encoder.load_state_dict(state, strict=False)  # the dropped layers are 'unexpected'
    if missing:
        raise CourseInputError(f"the text tower lacks weights for {missing[:3]}; is this a course CLIPModel?")
    return encoder.eval().requires_grad_(False)


def encode_prompt_pooled(prompts, tokenizer, text_encoder, *, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (states (B, L, D), pooled (B, P)): the penultimate hidden states and the projected pooled embedding.   [SD3, nb 10]

    As StableDiffusion3Pipeline._get_clip_prompt_embeds with clip_skip=None: pad to model_max_length,
    hidden_states[-2] (before the final layer norm) and text_embeds (the end token, final layer norm,
    text_projection). text_encoder: a CLIPTextModelWithProjection (text_encoder_with_projection). A prompt
    longer than model_max_length is refused (check_prompt_lengths); "" is the unconditional prompt.
    """
    prompts = as_prompts(prompts)
    device = torch.device(device) if device is not None else text_encoder.device
    ids = tokenize(prompts, tokenizer).to(device)
    with torch.no_grad():
        out = text_encoder(ids, output_hidden_states=True)
    return out.hidden_states[-2], out.text_embeds


def encode_prompt(prompts, tokenizer, text_encoder, *, device=None, truncation: bool = False) -> torch.Tensor:
    """Return the prompt embeddings the UNet cross-attends to: last_hidden_state (B, L, D).   [LDM sec. 3.3, nb 05-06]

    As StableDiffusionPipeline.encode_prompt: pad to model_max_length, no attention mask (unless
    text_encoder.config.use_attention_mask), output [0] of the text encoder (after its final layer
    norm). "" gives the unconditional embedding of classifier-free guidance. A prompt longer than
    model_max_length is refused unless truncation=True (the pipeline's cut, see tokenize).
    text_encoder may be a CLIPTextModel or a CLIPModel (its text tower is used).
    """
    encoder = text_encoder_of(text_encoder)
    device = torch.device(device) if device is not None else encoder.device
    prompts = as_prompts(prompts)
    if not truncation:
        check_prompt_lengths(prompts, tokenizer)
    warn_unknown_words(prompts, tokenizer, stacklevel=2)
    enc = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt")
    mask = enc.attention_mask.to(device) if getattr(encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        return encoder(enc.input_ids.to(device), attention_mask=mask)[0]
