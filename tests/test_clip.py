"""pipeline.models.clip: loaders, the three ViT variants, batched text encoding."""

from __future__ import annotations

import pickle
import zipfile

import pytest
import torch
import torch.nn.functional as F

from pipeline.core import safe_pickle
from pipeline.models.clip import CLIPLoadError, convert, load_clip, text, vision
from tests.test_safe_pickle import payloads, save_runs_on_load, save_with_global

TINY = "OADP-Tiny-ViT-32"
SMALL = "OADP-Small-ViT-32"  # 2 heads


@pytest.fixture(scope="module")
def tiny():
    return load_clip(TINY, "random")


@pytest.fixture(scope="module")
def small():
    return load_clip(SMALL, "random")


def images(n: int, h: int = 224, w: int = 224, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def embeddings(clip) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        img = vision.encode_standard(clip.model.visual, images(2))
    return img, text.encode_text(clip.model, ["a photo of a red star", "cat"])


@pytest.mark.parametrize("name", [TINY, SMALL])
def test_object_stream_with_all_foreground_is_the_cls_output(name, tiny, small):
    clip = tiny if name == TINY else small
    enc = vision.ObjectAwareEncoder(clip.model.visual)
    assert (enc.stride, enc.padding, enc.grid) == (16, 15, 14)
    x = images(3)
    with torch.inference_mode():
        obj = enc(x, torch.ones(3, 14, 14, dtype=torch.bool))
        cls = enc.encode_cls(x)
        partial = torch.ones(3, 14, 14, dtype=torch.bool)
        partial[:, :, :5] = False
        masked = enc(x, partial)
    torch.testing.assert_close(obj, cls, atol=1e-5, rtol=0)
    assert (masked - cls).abs().max() > 1e-3  # the mask changes what [OBJ] sees
    assert torch.allclose(masked.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_object_encoder_mini_batches_do_not_change_results(tiny):
    x = images(5, seed=1)
    fg = torch.rand(5, 14, 14, generator=torch.Generator().manual_seed(2)) > 0.5
    with torch.inference_mode():
        whole = vision.ObjectAwareEncoder(tiny.model.visual, mini_batch=512)(x, fg)
        pieces = vision.ObjectAwareEncoder(tiny.model.visual, mini_batch=2)(x, fg)
    torch.testing.assert_close(whole, pieces, atol=1e-5, rtol=0)


def test_any_resolution_at_224_is_the_standard_forward(small):
    x = images(2)
    with torch.inference_mode():
        a = vision.encode_any_resolution(small.model.visual, x)
        b = vision.encode_standard(small.model.visual, x)
        big = vision.encode_any_resolution(small.model.visual, images(1, 480, 640))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert big.shape == (1, 128) and torch.isclose(big.norm(), torch.tensor(1.0))


def test_position_interpolation_keeps_corners_and_class_position(tiny):
    v = tiny.model.visual
    pos = vision.interpolate_pos(v, (15, 20))
    assert pos.shape == (1 + 15 * 20, 64)
    torch.testing.assert_close(pos[0], v.positional_embedding[0])
    torch.testing.assert_close(vision.interpolate_pos(v, (7, 7)), v.positional_embedding)


def test_text_adaptive_padding_is_exact(small):
    names = ["a photo of a small red circle in the scene", "dog", "There is one large cyan hexagon in the picture"]
    with torch.inference_mode():
        full = F.normalize(small.model.encode_text(text.tokenizer()(names)), dim=-1)
    batched = text.encode_text(small.model, names)
    one_by_one = torch.cat([text.encode_text(small.model, [n]) for n in names])
    assert text.tokenize(names).shape[1] < 77
    torch.testing.assert_close(batched, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_by_one, full, atol=1e-5, rtol=0)


def test_random_weights_are_seeded_and_recorded():
    a, b = load_clip(TINY, "random"), load_clip(TINY, "random")
    torch.testing.assert_close(a.model.visual.conv1.weight, b.model.visual.conv1.weight)
    assert a.is_random and a.provenance()["clip_weights"] == "random"


# ------------------------------------------------------------------------------------------------ loaders


def test_open_clip_checkpoint_round_trip(tmp_path, small):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in small.model.state_dict().items()}, "epoch": 3}, path)
    loaded = load_clip(SMALL, str(path))
    assert loaded.source == "state-dict" and len(loaded.weights_hash) == 64
    for x, y in zip(embeddings(small), embeddings(loaded), strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_openai_jit_archive(tmp_path, small):
    path = tmp_path / "ViT-tiny.pt"
    model = small.model
    traced = torch.jit.trace(model, (images(1), text.tokenizer()(["x"])), check_trace=False, strict=False)
    traced.save(str(path))
    loaded = load_clip(SMALL, str(path))
    assert loaded.source == "openai-jit"
    for x, y in zip(embeddings(small), embeddings(loaded), strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def save_openai_layout(path, clip) -> None:
    """``clip``'s weights in OpenAI's own CLIP classes (clip-anytorch's ``build_model``: fp16 like the release),
    with the release's extra buffers, traced and saved: the layout of OpenAI's ``ViT-B-32.pt``."""
    from clip.model import build_model

    openai = build_model({k: v.clone() for k, v in clip.model.state_dict().items()})
    for key, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        openai.__dict__.pop(key, None)  # an int attribute in clip-anytorch, a buffer in the release
        openai.register_buffer(key, torch.tensor(value))
    traced = torch.jit.trace(openai, (images(1).half(), text.tokenizer()(["x"])), check_trace=False)
    traced.save(str(path))


def test_openai_layout_jit_archive_is_read_without_torch_jit_load(tmp_path, small, monkeypatch):
    path = tmp_path / "ViT-S-32.pt"
    save_openai_layout(path, small)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert {"ViT-S-32/data.pkl", "ViT-S-32/constants.pkl"} <= set(names)
    assert any(n.startswith("ViT-S-32/code/") for n in names) and any(n.startswith("ViT-S-32/data/") for n in names)
    reference = torch.jit.load(str(path)).state_dict()
    got = safe_pickle.torchscript_state_dict(path)
    assert set(got) == set(reference) and "vocab_size" in got and got["visual.proj"].dtype == torch.float16
    assert all(torch.equal(got[k], reference[k]) and got[k].dtype == reference[k].dtype for k in reference)

    def no_jit_load(*args, **kwargs):
        raise AssertionError("torch.jit.load runs the archive's code")

    monkeypatch.setattr(torch.jit, "load", no_jit_load)
    loaded = load_clip(SMALL, str(path))
    assert loaded.source == "openai-jit"
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, reference[key].float()), key
    for x, y in zip(embeddings(small), embeddings(loaded), strict=True):
        assert F.cosine_similarity(x, y).min() > 0.999  # the archive holds fp16 weights


@pytest.mark.parametrize("payload", ["setstate", "os.system", "builtins.eval"])
def test_jit_archive_that_would_run_code_is_refused_unrun(tmp_path, payload):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    if payload == "setstate":
        save_runs_on_load(path, marker)
    else:
        save_with_global(path, payloads(marker)[payload])
    with pytest.raises(CLIPLoadError, match=r"evil\.pt: refused, it is not plain CLIP weights"):
        load_clip(TINY, str(path))
    assert not marker.exists()


def test_openai_state_dict_in_fp16(tmp_path, small):
    state = {k: v.half() for k, v in small.model.state_dict().items()}
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    path = tmp_path / "openai.pt"
    torch.save(state, path)
    loaded = load_clip(SMALL, str(path))
    img, txt = embeddings(loaded)
    ref_img, ref_txt = embeddings(small)
    assert F.cosine_similarity(img, ref_img).min() > 0.999 and F.cosine_similarity(txt, ref_txt).min() > 0.999


def test_hugging_face_folder_gives_the_same_embeddings(tmp_path, small):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            vocab_size=49408,
            hidden_act="quick_gelu",
        ),
        vision_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=224,
            patch_size=32,
            hidden_act="quick_gelu",
        ),
        projection_dim=128,
    )
    hf = CLIPModel(cfg)
    hf.load_state_dict(convert.open_clip_to_hf(small.model.state_dict()), strict=False)
    hf.save_pretrained(tmp_path / "hf")
    loaded = load_clip("openai/clip-tiny", str(tmp_path / "hf"))
    assert loaded.source == "hf-folder"
    for x, y in zip(embeddings(small), embeddings(loaded), strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    # and the HF model itself agrees (the conversion is a true inverse)
    tokens = text.tokenizer()(["a photo of a red star"])
    with torch.inference_mode():
        hf_txt = F.normalize(
            hf.get_text_features(input_ids=tokens).pooler_output
            if hasattr(hf.get_text_features(input_ids=tokens), "pooler_output")
            else hf.get_text_features(input_ids=tokens),
            dim=-1,
        )
    torch.testing.assert_close(hf_txt, text.encode_text(small.model, ["a photo of a red star"]), atol=1e-5, rtol=0)


def test_missing_weights_say_what_is_expected(tmp_path):
    with pytest.raises(CLIPLoadError, match=r"not found at .*ViT-B-32\.pt.*Nothing is downloaded"):
        load_clip("ViT-B-32", str(tmp_path / "ViT-B-32.pt"))


def test_corrupt_checkpoint_is_refused(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x80\x04not a checkpoint at all" * 10)
    with pytest.raises(CLIPLoadError, match=r"broken\.pt: not a readable CLIP checkpoint"):
        load_clip(TINY, str(path))


def test_mismatched_checkpoint_is_refused(tmp_path, small):
    path = tmp_path / "small.pt"
    torch.save(small.model.state_dict(), path)
    with pytest.raises(CLIPLoadError, match=r"small\.pt does not fit CLIP model 'OADP-Tiny-ViT-32': shape mismatch"):
        load_clip(TINY, str(path))


def test_pickle_with_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"visual.proj": Evil()}))
    with pytest.raises(CLIPLoadError, match="not a readable CLIP checkpoint"):
        load_clip(TINY, str(path))
    assert not (tmp_path / "pwned").exists()


def test_unknown_model_lists_known_ones():
    with pytest.raises(
        CLIPLoadError, match=r"unknown CLIP model 'ViT-Q-99'; known models: .*OADP-Tiny-ViT-32.*ViT-B-32"
    ):
        load_clip("ViT-Q-99", "random")


def test_teacher_configs_differ_in_heads_only():
    """The demo teacher (4 heads in its image tower) and the one-head config of earlier checkpoints: same state-dict
    shapes, different forward, so a checkpoint must be read with the name it was trained under."""
    four, one = load_clip("OADP-Teacher-ViT-4H", "random"), load_clip("OADP-Teacher-ViT", "random")
    assert four.model.visual.transformer.resblocks[0].attn.num_heads == 4
    assert one.model.visual.transformer.resblocks[0].attn.num_heads == 1
    shapes = {k: v.shape for k, v in four.model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in one.model.state_dict().items()}
    one.model.load_state_dict(four.model.state_dict())
    x = images(1)
    with torch.inference_mode():
        a, b = vision.encode_standard(four.model.visual, x), vision.encode_standard(one.model.visual, x)
    assert (a - b).abs().max() > 1e-3
