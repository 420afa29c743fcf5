"""course_lib.pipeline: the course's text-to-image parts as a real StableDiffusionPipeline folder.

Oracle: diffusers' StableDiffusionPipeline itself, loaded from the folder (here and in a fresh,
offline process). The parts are tiny: a random UNet2DConditionModel with text2image.UNET_CONFIG's
blocks at small widths, and the shipped data/vae and data/clip text tower.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from course_lib import attention, checkpoints, environment, pipeline, samplers, text2image
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red circle in the top left", "a blue square on the right"]
TOL = 1e-5


def tiny_parts() -> text2image.Parts:
    unet = text2image.make_unet(seed=3, block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=2).eval()
    from course_lib import vae as vae_lib

    tokenizer, encoder = text2image.load_text_encoder(device="cpu")
    return text2image.Parts(unet, vae_lib.load_vae(device="cpu"), tokenizer, encoder)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(parts, folder, pipe): tiny parts saved as a pipeline folder, and the folder loaded back."""
    folder = tmp_path_factory.mktemp("pipe") / "sd_tiny"
    parts = tiny_parts()
    pipeline.save_pipeline(parts, folder)
    pipe = pipeline.load_pipeline(folder, "cpu")
    return parts, folder, pipe


def test_scheduler_is_what_the_course_loop_follows():
    sched = pipeline.scheduler()
    for n in (10, 25, 50):
        sched.set_timesteps(n)
        ours = samplers.inference_timesteps(1000, n, "leading", offset=1)
        assert torch.equal(sched.timesteps, ours), n
    assert sched.timesteps[0] == 981 and sched.timesteps[-1] == 1  # 50 steps: 981, ..., 1
    assert sched.init_noise_sigma == 1.0 and not sched.config.clip_sample and not sched.config.set_alpha_to_one
    # the scheduler's float32 cumprod vs the course's float64 one: same schedule, rounding apart
    assert float((pipeline.alpha_bars() - text2image.SCHEDULE.alpha_bars).abs().max()) < 1e-6


def test_folder_is_a_diffusers_pipeline_with_a_manifest(built):
    _, folder, pipe = built
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["scheduler"] == ["diffusers", "DDIMScheduler"]
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    manifest = checkpoints.verify(folder)
    listed = set(manifest["files"])
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert any(f.startswith(sub + "/") for f in listed), sub
    assert "model_index.json" in listed and not any(f.endswith((".bin", ".pt", ".pkl")) for f in listed)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.config.steps_offset == 1
    assert pipe.text_encoder.config.eos_token_id == 3  # the course's special ids survive the round trip
    # data/vae's weights are float16 numbers: stored in float16, loaded back as float32 (the images test exactness)
    assert manifest["recipe"]["stored_float16"] == ["vae/diffusion_pytorch_model.safetensors"]
    assert pipe.vae.dtype == torch.float32 and pipe.unet.dtype == torch.float32


@pytest.mark.parametrize("num_steps", [10, 25])
def test_course_loop_gives_the_pipelines_image(built, worst, num_steps):
    _, _, pipe = built
    parts = pipeline.parts_from_pipeline(pipe)
    for seed in (0, 1):
        for g in (1.0, 4.0):  # g = 1: the pipeline turns CFG off, and so does the course's loop
            ours = text2image.generate(parts, PROMPTS, guidance_scale=g, num_steps=num_steps,
                                       generator=torch.Generator().manual_seed(seed))
            theirs = pipeline.pipeline_images(pipe, PROMPTS, num_steps=num_steps, guidance_scale=g,
                                              generator=torch.Generator().manual_seed(seed))
            diff = float((ours - theirs).abs().max())
            worst("pipeline: course loop vs StableDiffusionPipeline image", diff)
            assert diff <= TOL, (seed, g, diff)
            assert float(ours.std()) > 0.01  # an image, not a constant
    # the latents themselves: bitwise in practice
    z = text2image.generate_latents(parts, PROMPTS, guidance_scale=7.5, num_steps=num_steps,
                                    generator=torch.Generator().manual_seed(2))
    z_pipe = pipe(PROMPTS, num_inference_steps=num_steps, guidance_scale=7.5, output_type="latent",
                  generator=torch.Generator().manual_seed(2)).images
    worst("pipeline: course loop vs StableDiffusionPipeline latents", float((z - z_pipe).abs().max()))
    assert float((z - z_pipe).abs().max()) <= TOL


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m"])
def test_course_loop_with_each_solver_gives_the_pipelines_latents(built, worst, loop_vs_pipeline, name):
    """The same loop with another solver equals the pipeline given that diffusers scheduler from_config."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler

    cls = {"euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler, "dpmpp_2m": DPMSolverMultistepScheduler}[name]
    _, _, pipe = built
    parts = pipeline.parts_from_pipeline(pipe)
    pipe.scheduler, ddim = cls.from_config(pipeline.SCHEDULER_CONFIG), pipe.scheduler
    try:
        for g in (1.0, 4.0):
            # relative: Euler and Heun step in x_bar = z sqrt(sigma^2 + 1), up to ~15 times z at 8 steps
            _, diff = loop_vs_pipeline(parts, pipe, PROMPTS, guidance_scale=g, num_steps=8, sampler=name, seed=5)
            worst(f"pipeline: course loop vs StableDiffusionPipeline, {name} (relative)", diff)
            assert diff <= TOL, (g, diff)
    finally:
        pipe.scheduler = ddim


def test_fresh_offline_process_loads_the_folder(built, tmp_path):
    parts, folder, _ = built
    ours = text2image.generate(parts, PROMPTS[:1], guidance_scale=4.0, num_steps=10,
                               generator=torch.Generator().manual_seed(5))
    np.save(tmp_path / "ours.npy", ((ours + 1) / 2).permute(0, 2, 3, 1).numpy())
    script = textwrap.dedent(f"""
        import numpy as np, torch
        torch.set_num_threads(1)
        from diffusers import StableDiffusionPipeline
        pipe = StableDiffusionPipeline.from_pretrained({str(folder)!r}, low_cpu_mem_usage=False)
        pipe.set_progress_bar_config(disable=True)
        image = pipe({PROMPTS[0]!r}, num_inference_steps=10, guidance_scale=4.0, height=32, width=32,
                     generator=torch.Generator().manual_seed(5), output_type="np").images
        ours = np.load({str(tmp_path / "ours.npy")!r})
        print(type(pipe).__name__, image.shape, f"{{np.abs(image - ours).max():.3e}}")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    name, *shape, diff = out.stdout.split()
    assert name == "StableDiffusionPipeline" and "".join(shape) == "(1,32,32,3)"
    assert float(diff) <= TOL


def test_manifest_catches_a_changed_file(built, tmp_path):
    _, folder, _ = built
    copy = tmp_path / "changed"
    shutil.copytree(folder, copy)
    config = copy / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"steps_offset": 1', '"steps_offset": 0'))
    with pytest.raises(CourseInputError, match="scheduler_config.json does not match its manifest.*course_lib.pipeline build"):
        pipeline.load_pipeline(copy, "cpu")
    (copy / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.copy(folder / "scheduler" / "scheduler_config.json", config)
    with pytest.raises(CourseInputError, match="diffusion_pytorch_model.safetensors is missing"):
        pipeline.verify(copy)


def test_stable_diffusion_without_gpu_or_weights_says_why_in_one_line(built, monkeypatch):
    _, folder, _ = built
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CourseInputError, match="no CUDA GPU") as no_gpu:
        pipeline.load_stable_diffusion()
    with pytest.raises(CourseInputError, match="not available: offline") as offline:
        pipeline.load_stable_diffusion(device="cpu", local_files_only=True)  # never touches the network
    for exc in (no_gpu, offline):
        assert "\n" not in str(exc.value) and len(str(exc.value)) < 300
    # the code path itself, on the tiny folder: the same loader, float32 on the CPU
    pipe = pipeline.load_stable_diffusion(str(folder), device="cpu", local_files_only=True)
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.unet.dtype == torch.float32
    # and the notebook's choice: Stable Diffusion when it loads, the course's folder otherwise
    monkeypatch.setattr(environment, "default_device", lambda: torch.device("cpu"))
    chosen, message = pipeline.choose_pipeline(fallback=folder, local_files_only=True)
    assert type(chosen).__name__ == "StableDiffusionPipeline" and chosen.unet.config.sample_size == 8
    assert message.startswith("Using the course's sd_tiny pipeline, because no CUDA GPU") and "\n" not in message
    chosen, message = pipeline.choose_pipeline(str(folder), fallback="no_such_folder", device="cpu")
    assert message.startswith("Running ") and "float32" in message


def test_float16_on_the_cpu_is_refused_at_load_time(built):
    _, folder, _ = built
    with pytest.raises(CourseInputError, match="float16 weights on the CPU"):
        pipeline.load_pipeline(folder, "cpu", dtype=torch.float16)
    with pytest.raises(CourseInputError, match="float16 weights on the CPU"):
        pipeline.load_stable_diffusion(str(folder), device="cpu", dtype=torch.float16, local_files_only=True)
    with pytest.raises(CourseInputError, match="floating-point torch.dtype"):
        pipeline.load_pipeline(folder, "cpu", dtype="float16")


def test_cross_attention_maps_sum_to_one_and_leave_the_image_unchanged(built, worst):
    parts, _, _ = built
    before = {name: type(p) for name, p in parts.unet.attn_processors.items()}
    prompt = PROMPTS[0]
    out = pipeline.cross_attention_maps(parts, prompt, guidance_scale=4.0, num_steps=10,
                                        generator=torch.Generator().manual_seed(0))
    assert {name: type(p) for name, p in parts.unet.attn_processors.items()} == before  # restored
    assert out.layers and all(name.endswith("attn2.processor") for name in out.layers)
    side = parts.unet.config.sample_size
    assert out.probs.shape == (1, side * side, len(out.tokens)) and out.resolution == side
    rows = out.probs.sum(-1)
    worst("pipeline: attention rows sum - 1", float((rows - 1).abs().max()))
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)
    every = attention.word_maps(out.probs, out.tokens, side, side, skip=())
    total = torch.stack([m for _, m in every]).sum(0)
    assert torch.allclose(total, torch.ones(side, side), atol=1e-5)
    words = [tok for tok, _ in out.words]
    assert words[:3] == ["<|startoftext|>", "a", "red"] and "<|pad|>" not in words
    # the recording processor computes what the default one does: the same image
    image = text2image.generate(parts, [prompt], guidance_scale=4.0, num_steps=10,
                                generator=torch.Generator().manual_seed(0))[0]
    worst("pipeline: image with recording processors vs without", float((image - out.image).abs().max()))
    assert float((image - out.image).abs().max()) <= TOL
    # the layers by resolution: 8x8 in the first down and last up block, 4x4 in the mid block (checked by shape too)
    assert {n.split(".")[0] for n in out.layers} == {"down_blocks", "up_blocks"}
    coarse = pipeline.cross_attention_maps(parts, prompt, num_steps=2, resolution=4)
    assert [n.split(".")[0] for n in coarse.layers] == ["mid_block"] and coarse.probs.shape[1] == 16
    with pytest.raises(CourseInputError, match=r"no cross-attention layer works at 3x3; this UNet's feature maps are \[4, 8\]"):
        pipeline.cross_attention_maps(parts, prompt, num_steps=2, resolution=3)


def test_shipped_folder_holds_the_shipped_parts():
    """data/sd_shapes is built from data/text2image and the cut text encoder: a stale folder fails here."""
    manifest = checkpoints.verify(pipeline.PIPELINE_NAME)
    unet = checkpoints.read_manifest("text2image")["files"]["diffusion_pytorch_model.safetensors"]["sha256"]
    assert manifest["files"]["unet/diffusion_pytorch_model.safetensors"]["sha256"] == unet
    folder = checkpoints.checkpoint_dir(pipeline.PIPELINE_NAME)
    config = json.loads((folder / "text_encoder" / "config.json").read_text())
    assert config["num_hidden_layers"] == text2image.TEXT_LAYERS
    _, shipped = text2image.load_text_encoder(device="cpu")
    from safetensors.torch import load_file

    saved = load_file(folder / "text_encoder" / "model.safetensors")
    assert saved.keys() == shipped.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in shipped.state_dict().items())
