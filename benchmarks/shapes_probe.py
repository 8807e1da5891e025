"""Can a vision tower learn the benchmark's shapes at all? Each tower trained image-only on the attributes directly.

The quickstart's match task gives shape a weak signal: on the plain ``easy`` data "the colours match" is already
right 92% of the time, so only the other 8% of examples reward shape. This probe removes that question: each
from-scratch tower gets the same 32-pixel ``easy`` images (one object) with the object's shape (4 classes) and
colour (5 classes) as two supervised targets, and its validation accuracy on both is read every 100 steps. A tower
that cannot get shape here cannot be expected to find it through the match task; one that gets it fast points at
the training signal instead.

Run: ``OMP_NUM_THREADS=1 python benchmarks/shapes_probe.py`` (writes docs/fusion_zoo.md; about 2 minutes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch
import torch.nn.functional as F
from _doc import machine_line, markdown_table, write_section

from data.shapes import DIFFICULTIES, draw_image, sample_examples

TOWERS = {  # the previous and the current quickstart tower
    "tiny ViT (patch 4, width 64, 3 blocks)": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4,
                                               "embed_dim": 64, "depth": 3, "num_heads": 2, "global_pool": "avg",
                                               "class_token": False}),
    "test_resnet (timm's smallest ResNet)": ("test_resnet", {}),
}


def images(n: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(n, 3, size, size)`` standardised images and their objects' shape and colour indices."""
    examples = sample_examples(n, "easy", seed=seed)
    rng = np.random.default_rng(seed)
    pixels = np.stack([np.asarray(draw_image(ex["objects"], size, rng)) for ex in examples])
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    colours, shapes = DIFFICULTIES["easy"]
    shape = torch.tensor([shapes.index(ex["objects"][0][1]) for ex in examples])
    colour = torch.tensor([colours.index(ex["objects"][0][0]) for ex in examples])
    return x, shape, colour


def probe(name: str, kwargs: dict, train, val, steps: int, every: int, lr: float) -> list[tuple[int, float, float]]:
    torch.manual_seed(0)
    n_colours, n_shapes = (len(v) for v in DIFFICULTIES["easy"])
    model = timm.create_model(name, pretrained=False, num_classes=n_shapes + n_colours, **kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    x, shape, colour = train
    curve = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (64,))
        out = model(x[idx])
        loss = F.cross_entropy(out[:, :n_shapes], shape[idx]) + F.cross_entropy(out[:, n_shapes:], colour[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0:
            model.eval()
            with torch.no_grad():
                out = model(val[0])
            model.train()
            curve.append((step, (out[:, :n_shapes].argmax(1) == val[1]).float().mean().item(),
                          (out[:, n_shapes:].argmax(1) == val[2]).float().mean().item()))
    return curve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    train, val = images(8000, 0, 32), images(500, 1, 32)
    rows = []
    for label, (name, kwargs) in TOWERS.items():
        start = time.perf_counter()
        curve = probe(name, kwargs, train, val, args.steps, args.every, args.lr)
        seconds = time.perf_counter() - start
        shapes = " / ".join(f"{100 * s:.0f}" for _, s, _ in curve)
        colours = " / ".join(f"{100 * c:.0f}" for _, _, c in curve)
        rows.append([label, shapes, colours, f"{seconds:.0f}"])
        print(rows[-1], flush=True)
    steps = ", ".join(str(s) for s in range(args.every, args.steps + 1, args.every))
    text = "\n".join([
        "### What the towers learn (measured)", "",
        machine_line() + f" Command: `OMP_NUM_THREADS=1 python benchmarks/shapes_probe.py`. Each tower from "
        f"scratch, trained image-only on the object's shape (4 classes, chance 25%) and colour (5 classes, chance "
        f"20%) of 8000 `easy` images at 32 px, batch 64, AdamW lr {args.lr:g}; validation accuracy (500 images) "
        f"after {steps} steps.", "",
        markdown_table(["tower", "shape accuracy %", "colour accuracy %", "seconds (one thread)"], rows),
    ])
    if not args.no_doc:
        write_section("fusion_zoo.md", "shapes_probe", text, title="Fusion zoo")
    print(text)


if __name__ == "__main__":
    main()
