"""The real-instruction-model path (language.load_instruction_model, expand_prompt), run end to end without its weights.

language.REAL_WRITER is Qwen2.5-0.5B-Instruct, a transformers Qwen2ForCausalLM. Here a tiny Qwen2ForCausalLM (2 layers,
hidden 64) keeps Qwen2.5's architecture flags (tied input and output embeddings, rotary positions with theta 1e6,
grouped-query attention with fewer key/value heads than query heads, a vocabulary padded past the tokenizer's, and
a generation_config that samples, as Qwen2.5-Instruct's does) with seeded random weights. It is written with save_pretrained
into a temporary folder next to the course's own byte-level BPE tokenizer (data/prompt_writer), given the two ChatML
tokens and the ChatML chat template Qwen2.5 uses (without its tool branch), so expand_prompt takes its chat-template
branch; a second folder holds the same tokenizer without a template, for the plain branch.

Oracles: the ChatML text written out by hand, a greedy decoding loop written here (argmax of the logits after
Qwen's repetition penalty), the model's own max_position_embeddings, and the weights as they were saved.
"""

from __future__ import annotations

import time

import pytest
import torch

from course_lib import checkpoints, language
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# Qwen2.5's chat template without its tool-calling branch: a system message (Qwen's default when none is given),
# then each message as <|im_start|>role\ncontent<|im_end|>\n, then the assistant's turn opened.
CHATML = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' or (message['role'] == 'system' and not loop.first) "
    "or message['role'] == 'assistant' %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
POSITIONS = 256  # small, so that a long request meets the limit (Qwen2.5-0.5B has 32768)
REPETITION_PENALTY = 1.1
REQUEST = "a crimson ball in the upper left, cosy evening light"  # notebook 09's request


def chatml(system: str, user: str) -> str:
    """The text a ChatML model reads for a system and a user message, its answer's turn opened."""
    return f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def build_tiny_qwen(folder, seed: int = 0, *, chat_template: str | None = CHATML) -> dict:
    """Write a tiny random Qwen2ForCausalLM and the course's tokenizer (ChatML tokens added) to `folder`; return its state."""
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(checkpoints.checkpoint_dir(language.NAME))  # data/prompt_writer
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
    tokenizer.chat_template = chat_template
    end_of_text, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", IM_END])
    config = Qwen2Config(vocab_size=64 * -(-len(tokenizer) // 64), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=POSITIONS, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                         tie_word_embeddings=True, initializer_range=0.1,  # 0.02 repeats the prompt's last token
                         bos_token_id=end_of_text, eos_token_id=im_end)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(  # sampling on, as Qwen2.5-Instruct's; expand_prompt must not sample
        bos_token_id=end_of_text, pad_token_id=end_of_text, eos_token_id=[im_end, end_of_text], do_sample=True,
        temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=REPETITION_PENALTY)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_qwen")
    return folder, build_tiny_qwen(folder)


@pytest.fixture(scope="module")
def qwen(built):
    return language.load_instruction_model(str(built[0]))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The same model, its tokenizer without a chat template."""
    folder = tmp_path_factory.mktemp("tiny_qwen_plain")
    build_tiny_qwen(folder, chat_template=None)
    return language.load_instruction_model(folder)


@pytest.fixture
def generated(monkeypatch):
    """Record every generate call of a Qwen2ForCausalLM: (input_ids, output ids)."""
    from transformers import Qwen2ForCausalLM

    calls, original = [], Qwen2ForCausalLM.generate

    def generate(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append((kwargs["input_ids"], out))
        return out

    monkeypatch.setattr(Qwen2ForCausalLM, "generate", generate)
    return calls


def greedy(model, input_ids, max_new_tokens, eos_ids, penalty=REPETITION_PENALTY) -> list[int]:
    """Greedy decoding written out: each step the argmax of the last logits after the repetition penalty
    (a seen token's positive logit divided by it, a negative one multiplied), stopping after an end token."""
    ids = input_ids[0].tolist()
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([ids])).logits[0, -1].clone()
            seen = torch.tensor(sorted(set(ids)))
            logits[seen] = torch.where(logits[seen] > 0, logits[seen] / penalty, logits[seen] * penalty)
            token = int(logits.argmax())
            ids.append(token)
            new.append(token)
            if token in eos_ids:
                break
    return new


# ----------------------------------------------------------------------------------------------
# Loading: the same class as REAL_WRITER, from a folder written by save_pretrained
# ----------------------------------------------------------------------------------------------

def test_loads_the_saved_qwen2_model_and_tokenizer_as_they_were_written(built, qwen):
    from transformers import Qwen2ForCausalLM

    model, tokenizer = qwen
    assert type(model) is Qwen2ForCausalLM and not model.training
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    config = model.config
    assert config.model_type == "qwen2" and config.tie_word_embeddings
    assert config.num_key_value_heads < config.num_attention_heads
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    saved = built[1]
    loaded = model.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    # the course's tokenizer, read through Qwen2's tokenizer class (transformers picks it from the config)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer" and tokenizer.chat_template == CHATML
    course = len(language.load_writer().tokenizer)  # the course's BPE (at most VOCAB_SIZE tokens), then the two added
    assert course <= language.VOCAB_SIZE and len(tokenizer) == course + 2 <= config.vocab_size
    assert tokenizer.convert_tokens_to_ids([IM_START, IM_END]) == [course, course + 1]


def test_loads_as_notebook_09_calls_it_and_from_a_path(built):
    from transformers import Qwen2ForCausalLM

    model, _ = language.load_instruction_model(str(built[0]), "cpu")  # positional device, as the Colab cell
    assert type(model) is Qwen2ForCausalLM
    model, _ = language.load_instruction_model(built[0])  # a pathlib.Path
    assert type(model) is Qwen2ForCausalLM


def test_float16_is_accepted_and_answers(built, generated):
    model, tokenizer = language.load_instruction_model(str(built[0]), dtype=torch.float16)
    assert model.dtype == torch.float16
    reply = language.expand_prompt(model, tokenizer, "a red ball", max_new_tokens=6)
    assert isinstance(reply, str)
    (input_ids, out), = generated
    assert out.shape[1] - input_ids.shape[1] <= 6


# ----------------------------------------------------------------------------------------------
# expand_prompt: what the model reads, what it answers
# ----------------------------------------------------------------------------------------------

def test_chat_template_branch_feeds_the_system_prompt_and_the_request(qwen, generated):
    model, tokenizer = qwen
    reply = language.expand_prompt(model, tokenizer, REQUEST, max_new_tokens=12)
    (input_ids, out), = generated
    expected = chatml(language.EXPANSION_PROMPT, REQUEST)
    assert tokenizer.decode(input_ids[0]) == expected  # no BOS added before the template's own tokens
    assert input_ids[0].tolist() == tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert input_ids[0, 0] == tokenizer.convert_tokens_to_ids(IM_START)  # a ChatML token is one token
    new = out[0, input_ids.shape[1]:]
    assert 1 <= len(new) <= 12
    assert isinstance(reply, str) and reply and reply == tokenizer.decode(new, skip_special_tokens=True).strip()


def test_answer_is_greedy_whatever_the_generation_config_says(qwen, generated):
    model, tokenizer = qwen
    assert model.generation_config.do_sample  # the saved config samples, as Qwen2.5-Instruct's
    torch.manual_seed(1)
    first = language.expand_prompt(model, tokenizer, REQUEST, max_new_tokens=12)
    torch.manual_seed(2)
    second = language.expand_prompt(model, tokenizer, REQUEST, max_new_tokens=12)
    assert first == second
    input_ids, out = generated[0]
    eos = set(model.generation_config.eos_token_id)
    assert out[0, input_ids.shape[1]:].tolist() == greedy(model, input_ids, 12, eos)


def test_notebook_09_call_with_the_default_max_new_tokens(qwen, generated):
    model, tokenizer = qwen
    reply = language.expand_prompt(model, tokenizer, REQUEST)  # as the Colab cell calls it
    (input_ids, out), = generated
    assert isinstance(reply, str) and out.shape[1] - input_ids.shape[1] <= 60


def test_plain_branch_without_a_chat_template(plain, generated):
    model, tokenizer = plain
    assert not tokenizer.chat_template
    reply = language.expand_prompt(model, tokenizer, REQUEST, max_new_tokens=5)
    (input_ids, out), = generated
    assert tokenizer.decode(input_ids[0]) == f"{language.EXPANSION_PROMPT}\nRequest: {REQUEST}\nPrompt:"
    assert isinstance(reply, str) and out.shape[1] - input_ids.shape[1] <= 5


def test_the_positions_limit_is_exact(qwen, generated):
    """The prompt's tokens plus max_new_tokens may fill the model's positions, not one more."""
    model, tokenizer = qwen
    length = len(tokenizer(chatml(language.EXPANSION_PROMPT, REQUEST), add_special_tokens=False)["input_ids"])
    room = model.config.max_position_embeddings - length
    assert room > 1
    with pytest.raises(CourseInputError, match=f"take {length} tokens, plus max_new_tokens={room + 1}, and the model "
                                               f"has {POSITIONS} positions"):
        language.expand_prompt(model, tokenizer, REQUEST, max_new_tokens=room + 1)
    assert generated == []
    assert isinstance(language.expand_prompt(model, tokenizer, REQUEST, max_new_tokens=room), str)
    assert len(generated) == 1


# ----------------------------------------------------------------------------------------------
# Bad input: a clear CourseInputError, nothing generated
# ----------------------------------------------------------------------------------------------

LONG = "a red ball on the left and a blue square on the right, " * 40


@pytest.mark.parametrize("request_, max_new_tokens, match", [
    ("", 8, "request is empty"),
    ("   ", 8, "request is empty"),
    (None, 8, "request must be a string, got NoneType"),
    (3, 8, "request must be a string, got int"),
    (["a red ball"], 8, "request must be a string, got list"),
    ("a red ball", 0, "max_new_tokens must be an int >= 1, got 0"),
    ("a red ball", "3", "max_new_tokens must be an int >= 1, got '3'"),
    ("a red ball", 2.5, "max_new_tokens must be an int >= 1"),
    ("a red ball", True, "max_new_tokens must be an int >= 1"),
    (LONG, 8, f"too long for this model.*the model has {POSITIONS} positions. Shorten the request"),
], ids=["empty", "blank", "None", "int", "list", "max_new_tokens 0", "max_new_tokens '3'", "max_new_tokens 2.5",
        "max_new_tokens True", "past the positions"])
def test_bad_requests_are_refused_before_generating(qwen, generated, request_, max_new_tokens, match):
    model, tokenizer = qwen
    with pytest.raises(CourseInputError, match=match):
        language.expand_prompt(model, tokenizer, request_, max_new_tokens=max_new_tokens)
    assert generated == []


def test_model_and_tokenizer_swapped_are_refused(qwen, generated):
    model, tokenizer = qwen
    with pytest.raises(CourseInputError, match="model must be a causal language model with generate"):
        language.expand_prompt(tokenizer, model, "a red ball")
    with pytest.raises(CourseInputError, match="tokenizer must be a transformers tokenizer"):
        language.expand_prompt(model, "a tokenizer", "a red ball")
    assert generated == []


@pytest.mark.parametrize("dtype", ["half", "float16", 16, torch.int64, torch.bool])
def test_dtype_that_is_not_a_floating_torch_dtype_is_refused(built, dtype):
    with pytest.raises(CourseInputError, match="dtype must be a torch.dtype of floating point"):
        language.load_instruction_model(str(built[0]), dtype=dtype)


def test_a_folder_that_does_not_exist_is_refused_at_once_naming_what_to_pass(tmp_path):
    missing = tmp_path / "not_saved_yet"
    for model_id in (str(missing), missing, "./not_saved_yet", "runs/tiny/qwen", "~/models/qwen"):
        start = time.perf_counter()
        with pytest.raises(CourseInputError, match=r"there is no folder .*not a hub id.*save_pretrained") as info:
            language.load_instruction_model(model_id)
        assert time.perf_counter() - start < 1.0  # refused before the hub is asked
        assert language.REAL_WRITER in str(info.value)


def test_a_folder_without_a_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(CourseInputError, match="holds no config.json"):
        language.load_instruction_model(tmp_path)


def test_a_folder_with_pickled_weights_only_is_refused_not_unpickled(built, tmp_path):
    """The course loads safetensors only: a config.json with a pytorch_model.bin (a pickle) is refused."""
    from transformers import AutoConfig

    AutoConfig.from_pretrained(built[0]).save_pretrained(tmp_path)
    torch.save(built[1], tmp_path / "pytorch_model.bin")
    with pytest.raises(CourseInputError, match=r"could not load a causal language model .* from the folder .*"
                                               r"model\.safetensors"):
        language.load_instruction_model(tmp_path)


def test_a_model_folder_without_its_tokenizer_is_refused(built, tmp_path):
    """transformers builds an empty Qwen2Tokenizer from a folder holding no tokenizer files; the course refuses it."""
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    Qwen2ForCausalLM.from_pretrained(built[0]).save_pretrained(tmp_path)
    assert len(AutoTokenizer.from_pretrained(tmp_path)) <= 1  # what transformers itself gives
    with pytest.raises(CourseInputError, match="holds no tokenizer.*tokenizer.save_pretrained"):
        language.load_instruction_model(tmp_path)


def test_a_tokenizer_that_gives_no_tokens_is_refused_before_generating(qwen, tmp_path, generated):
    from transformers import AutoTokenizer, Qwen2Config

    Qwen2Config().save_pretrained(tmp_path)
    empty = AutoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(CourseInputError, match="turned the prompt into no tokens"):
        language.expand_prompt(qwen[0], empty, "a red ball")
    assert generated == []


def test_a_hub_id_the_hub_does_not_give_is_a_clear_error(monkeypatch):
    """With the hub offline (HF_HUB_OFFLINE=1; this machine has no hub) the refusal is at once and names what to pass."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(CourseInputError, match=r"could not load the hub id 'course-tests/no-such-model'.*HF_HUB_OFFLINE"
                                               r".*save_pretrained") as info:
        language.load_instruction_model("course-tests/no-such-model")
    assert time.perf_counter() - start < 2.0
    assert isinstance(info.value.__cause__, OSError)  # transformers' own message is kept as the cause


@pytest.mark.parametrize("model_id, match", [(5, "model_id must be a string or a pathlib.Path"),
                                             ("", "model_id is empty"), ("  ", "model_id is empty")])
def test_model_id_not_a_name_is_refused(model_id, match):
    with pytest.raises(CourseInputError, match=match):
        language.load_instruction_model(model_id)
