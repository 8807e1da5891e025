"""The embedded ``shapes`` benchmark: coloured shapes plus one statement each, true or false of the image.

Neither modality alone beats chance: labels are exactly 50/50, the image is independent of the label, and the
statement has the same distribution for true and false examples, so only reading both together helps.

* ``easy``: one object (5 colours x 4 shapes); the statement names a colour+shape. The statement is drawn
  uniformly, the object equals it (true) or is drawn uniformly from the other 19 combinations (false); both
  ways the object is uniform. Only 3 of the 19 false combinations share the stated colour, so "the colours match"
  is right 92% of the time; ``colour_lures=q`` makes a fraction q of the false statements name the object's colour
  with another shape, so that shape carries the label that often (the image stays uniform under both labels).
* ``hard``: 2-3 objects (4 colours x 3 shapes, distinct combinations) in distinct rows and columns of a 3x3
  grid, drawn first. Half the statements relate two of its objects ("the red circle is left of the blue
  square"); the relation word is whichever makes it true/false, and mirror symmetry of the layouts makes the
  statement distribution label-free. The other half count a shape ("there are two triangles"); false counts
  come from a measure-preserving shift of the true count's distribution, so they are distributed like true ones.
* ``binding``: two objects (5 colours x 4 shapes, the two differ in colour and in shape) in two cells of a 2x2
  grid; the statement names a colour+shape as in ``easy``. True: one of the two objects. False, half the time: a
  *conjunction lure*, the colour of one object with the shape of the other, so every word of the statement is in
  the picture; otherwise one of the 16 combinations that are neither drawn nor a lure. A model that sees only which
  colours and which shapes occur (a "bag of features") cannot tell a true statement from a lure and tops out near
  75%; getting past that needs colour and shape bound to the same place (Treisman & Gelade, 1980,
  feature-integration theory).
* ``relation``: two objects of different colours (4 colours x 3 shapes) in distinct rows and columns of a 3x3 grid;
  the statement relates them ("the red circle is left of the blue square"), built as in ``hard``. The colours
  alone identify the objects, so the task is *where* they are: a model that averages the image into one vector
  before fusing loses positions, one that fuses per image location keeps them.

Objects keep a 7% margin from the border, so timm's centre crop (crop_pct 0.875) never cuts them.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from crossfuse.registry import nearest as _hint

from .jsonl import read_jsonl
from .records import MultimodalDataset
from .registry import register_dataset
from .shapes_text import COLOURS, LANGUAGES, SHAPES, render, vocabulary_lines
from .splits import SplitNotFoundError
from .tokenizer import train_wordpiece_tokenizer

SPLITS = ("train", "val", "test")
LABEL_NAMES = ["false", "true"]
DIFFICULTIES = {"easy": (COLOURS[:5], SHAPES[:4]), "hard": (COLOURS[:4], SHAPES[:3]),
                "binding": (COLOURS[:5], SHAPES[:4]), "relation": (COLOURS[:4], SHAPES[:3])}
RGB = {"red": (225, 35, 35), "green": (30, 185, 60), "blue": (45, 90, 245), "yellow": (245, 220, 30),
       "white": (245, 245, 245)}  # fmt: skip
MARGIN = 0.07
VERSION = 1


def _sample_easy(rng: np.random.Generator, label: int, colour_lures: float = 0.0) -> tuple[list, tuple]:
    colours, shapes = DIFFICULTIES["easy"]
    combos = list(itertools.product(colours, shapes))
    said = combos[rng.integers(len(combos))]
    if label:
        colour, shape = said
    elif colour_lures and rng.random() < colour_lures:  # the stated colour, another shape: only shape tells
        colour, shape = said[0], [s for s in shapes if s != said[1]][rng.integers(len(shapes) - 1)]
    else:
        others = [c for c in combos if c != said]
        colour, shape = others[rng.integers(len(others))]
    size = rng.uniform(0.4, 0.6)
    cx, cy = rng.uniform(MARGIN + size / 2, 1 - MARGIN - size / 2, size=2)
    return [(colour, shape, cx, cy, size)], ("present", *said)


@lru_cache
def _count_distribution(n_colours: int, n_shapes: int) -> np.ndarray:
    """P(count of one given shape = k), k = 0..3, under the hard layout distribution (exact enumeration)."""
    combos = list(itertools.product(range(n_colours), range(n_shapes)))
    dist = np.zeros(4)
    for n in (2, 3):
        tuples = [t for t in itertools.product(combos, repeat=n) if len(set(t)) == n]
        counts = np.bincount([sum(s == 0 for _, s in t) for t in tuples], minlength=4)
        dist += 0.5 * counts / len(tuples)
    assert dist.max() <= 0.5, "count statements need every count below 1/2 probability"
    return dist


def _sample_hard(rng: np.random.Generator, label: int, relation_only: bool = False) -> tuple[list, tuple]:
    colours, shapes = DIFFICULTIES["hard"]
    n = 2 if relation_only else int(rng.integers(2, 4))
    while True:
        picks = [(colours[rng.integers(len(colours))], shapes[rng.integers(len(shapes))]) for _ in range(n)]
        if len({p[0] if relation_only else p for p in picks}) == n:  # relation: colours alone tell objects apart
            break
    cols, rows = rng.permutation(3)[:n], rng.permutation(3)[:n]
    cell = (1 - 2 * MARGIN) / 3
    objects = []
    for (colour, shape), col, row in zip(picks, cols, rows):
        size = cell * rng.uniform(0.75, 0.95)
        jx, jy = rng.uniform(-1, 1, size=2) * (cell - size) / 2
        objects.append((colour, shape, MARGIN + (col + 0.5) * cell + jx, MARGIN + (row + 0.5) * cell + jy, size))
    if relation_only or rng.random() < 0.5:  # relation between an ordered pair of objects
        i, j = rng.permutation(n)[:2]
        if rng.random() < 0.5:
            true_rel, false_rel = ("left", "right") if cols[i] < cols[j] else ("right", "left")
        else:
            true_rel, false_rel = ("above", "below") if rows[i] < rows[j] else ("below", "above")
        return objects, ("relation", picks[i], true_rel if label else false_rel, picks[j])
    shape = shapes[rng.integers(len(shapes))]
    count = sum(s == shape for _, s in picks)
    if not label:  # shift by 1/2 along the count distribution's CDF: measure-preserving and never the true count
        dist = _count_distribution(len(colours), len(shapes))
        cdf = np.cumsum(dist)
        u = (cdf[count] - dist[count] * rng.random() + 0.5) % 1.0
        count = int(min(np.searchsorted(cdf, u, side="right"), 3))
    return objects, ("count", shape, count)


def _sample_binding(rng: np.random.Generator, label: int) -> tuple[list, tuple]:
    colours, shapes = DIFFICULTIES["binding"]
    c = rng.permutation(len(colours))[:2]
    s = rng.permutation(len(shapes))[:2]
    picks = [(colours[c[0]], shapes[s[0]]), (colours[c[1]], shapes[s[1]])]
    cell = (1 - 2 * MARGIN) / 2
    objects = []
    for (colour, shape), k in zip(picks, rng.permutation(4)[:2]):
        size = cell * rng.uniform(0.7, 0.9)
        jx, jy = rng.uniform(-1, 1, size=2) * (cell - size) / 2
        objects.append((colour, shape, MARGIN + (k % 2 + 0.5) * cell + jx, MARGIN + (k // 2 + 0.5) * cell + jy, size))
    i = int(rng.integers(2))
    if label:
        said = picks[i]
    elif rng.random() < 0.5:  # the lure: both words are in the picture, on different objects
        said = (picks[i][0], picks[1 - i][1])
    else:
        lures = [(picks[0][0], picks[1][1]), (picks[1][0], picks[0][1])]
        others = [p for p in itertools.product(colours, shapes) if p not in picks + lures]
        said = others[rng.integers(len(others))]
    return objects, ("present", *said)


def sample_examples(n: int, difficulty: str = "easy", seed: int = 0, colour_lures: float = 0.0) -> list[dict]:
    """Draw ``n`` example layouts ``{"objects": [(colour, shape, cx, cy, size)], "statement", "label"}`` (no pixels).

    Coordinates and sizes are fractions of the image side; labels are exactly balanced.
    """
    rng = np.random.default_rng([seed, 99, list(DIFFICULTIES).index(difficulty)])
    return _sample_split(rng, n, difficulty, colour_lures)


def _sample_split(rng: np.random.Generator, n: int, difficulty: str, colour_lures: float = 0.0) -> list[dict]:
    sample = {"easy": lambda rng, label: _sample_easy(rng, label, colour_lures), "hard": _sample_hard,
              "binding": _sample_binding,
              "relation": lambda rng, label: _sample_hard(rng, label, relation_only=True)}[difficulty]
    labels = rng.permutation(np.arange(n) % 2)
    out = []
    for y in labels:
        objects, statement = sample(rng, int(y))
        out.append({"objects": objects, "statement": statement, "label": int(y)})
    return out


def draw_image(objects: list, image_size: int, rng: np.random.Generator) -> Image.Image:
    """Render objects on a plain grey, sometimes lightly noised background (drawn supersampled, then reduced)."""
    ss = max(1, min(4, 256 // image_size))
    side = image_size * ss
    grey = int(rng.integers(40, 91))
    im = Image.new("RGB", (side, side), (grey, grey, grey))
    draw = ImageDraw.Draw(im)
    for colour, shape, cx, cy, size in objects:
        fill = tuple(int(np.clip(v + rng.integers(-12, 13), 0, 255)) for v in RGB[colour])
        x, y, r = cx * side, cy * side, size * side / 2
        if shape == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        elif shape == "square":
            h = 0.85 * r
            draw.rectangle([x - h, y - h, x + h, y + h], fill=fill)
        elif shape == "triangle":
            draw.polygon([(x, y - r), (x - 0.95 * r, y + 0.8 * r), (x + 0.95 * r, y + 0.8 * r)], fill=fill)
        else:  # cross
            t = 0.32 * r
            draw.rectangle([x - r, y - t, x + r, y + t], fill=fill)
            draw.rectangle([x - t, y - r, x + t, y + r], fill=fill)
    if ss > 1:
        im = im.resize((image_size, image_size), Image.BOX)
    if rng.random() < 0.5:
        amp = int(rng.integers(4, 11))
        arr = np.asarray(im, dtype=np.int16) + rng.integers(-amp, amp + 1, size=(image_size, image_size, 3))
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return im


def _check_args(args: dict) -> None:
    if args["difficulty"] not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {args['difficulty']!r}.{_hint(args['difficulty'], DIFFICULTIES)} "
                         f"Valid: {', '.join(DIFFICULTIES)}")  # fmt: skip
    for lang in args["languages"]:
        if lang not in LANGUAGES:
            hint = _hint(lang, LANGUAGES)
            raise ValueError(f"unsupported language {lang!r}.{hint} Supported: {', '.join(LANGUAGES)}")
    if not args["languages"] or len(set(args["languages"])) != len(args["languages"]):
        raise ValueError(f"languages must be a non-empty list without repeats, got {args['languages']}")
    if not 0.0 <= args["colour_lures"] <= 1.0:
        raise ValueError(f"colour_lures must be in [0, 1], got {args['colour_lures']}")
    if args["colour_lures"] and args["difficulty"] != "easy":
        raise ValueError(f"colour_lures applies to the easy variant only (binding has its own lures), got "
                         f"difficulty {args['difficulty']!r}")
    if args["image_size"] < 16:
        raise ValueError(f"image_size must be at least 16, got {args['image_size']}")
    if min(args["n_train"], args["n_val"], args["n_test"]) < 0:
        raise ValueError("n_train, n_val and n_test must be >= 0")


def _write(out: Path, args: dict) -> None:
    (out / "img").mkdir(parents=True)
    langs = args["languages"]
    src = "en" if "en" in langs else langs[0]
    corpus, parallel = [], ["id\tsrc_lang\tsrc_text\ttgt_lang\ttgt_text"]
    for k, split in enumerate(SPLITS):
        rng = np.random.default_rng([args["seed"], k, list(DIFFICULTIES).index(args["difficulty"])])
        lines = []
        for i, ex in enumerate(_sample_split(rng, args[f"n_{split}"], args["difficulty"], args["colour_lures"])):
            ex_id = f"{split}_{i:05d}"
            img = f"img/{ex_id}.png"
            draw_image(ex["objects"], args["image_size"], rng).save(out / img, format="PNG")
            texts = {lang: render(ex["statement"], lang) for lang in langs}
            for lang in langs:
                row = {"id": ex_id, "img": img, "text": texts[lang], "label": ex["label"], "lang": lang}
                lines.append(json.dumps(row, ensure_ascii=False))
            if split == "train":
                corpus += texts.values()
                parallel += [f"{ex_id}\t{src}\t{texts[src]}\t{t}\t{texts[t]}" for t in langs if t != src]
        (out / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (out / "parallel.tsv").write_text("\n".join(parallel) + "\n", encoding="utf-8")
    (out / "labels.json").write_text(json.dumps(LABEL_NAMES) + "\n", encoding="utf-8")
    vocab = [line for lang in langs for line in vocabulary_lines(lang)]
    train_wordpiece_tokenizer(corpus + vocab, out / "tokenizer")
    meta = {"generator": "crossfuse.data.shapes", "version": VERSION, "args": args, "label_names": LABEL_NAMES}
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _existing(root: Path, args: dict) -> bool:
    """True if root holds a complete dataset made with ``args``; an error if it holds anything else."""
    meta_path = root / "meta.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8")).get("args")
        if old is not None:
            old = {"colour_lures": 0.0, **old}  # datasets written before the option existed had none
        if old == args:
            return True
        diff = {k: (old.get(k), v) for k, v in args.items() if not old or old.get(k) != v}
        raise FileExistsError(
            f"{root} already holds a shapes dataset generated with other arguments (existing, requested): {diff}. "
            "Choose another root or delete that folder."
        )
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists but is not a complete shapes dataset (no meta.json). Choose another root or delete it."
        )
    return False


def generate_shapes(
    root: str | os.PathLike,
    n_train: int = 2000,
    n_val: int = 500,
    n_test: int = 500,
    languages: tuple[str, ...] | list[str] = LANGUAGES,
    difficulty: str = "easy",
    image_size: int = 64,
    seed: int = 0,
    colour_lures: float = 0.0,
) -> Path:
    """Write the shapes benchmark to ``root`` (a no-op if it is already there with the same arguments).

    Layout: ``img/<id>.png``, ``{train,val,test}.jsonl`` (``{"id", "img", "text", "label", "lang"}``, one line per
    example and language, parallel statements sharing id, image and label), ``labels.json`` (``["false", "true"]``),
    ``parallel.tsv`` (train ids; en, or the first language, against every other), ``tokenizer/`` (WordPiece,
    loadable with ``AutoTokenizer``) and ``meta.json``. Everything is built in a temporary sibling folder that is
    renamed into place at the end, so an interrupted run never looks complete. Same arguments give the same bytes.
    """
    root = Path(root).absolute()
    args = {"n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test), "languages": list(languages),
            "difficulty": difficulty, "image_size": int(image_size), "seed": int(seed),
            "colour_lures": float(colour_lures)}  # fmt: skip
    _check_args(args)
    if _existing(root, args):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _write(tmp / "data", args)
        try:
            os.rename(tmp / "data", root)  # atomic; succeeds onto an empty folder too
        except OSError:
            if not _existing(root, args):  # someone else finished first with the same args, or raise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@register_dataset("shapes")
def build_shapes(
    root: str,
    split: str,
    languages: list[str] | None = None,
    generate: bool = True,
    n_train: int = 2000,
    n_val: int = 500,
    n_test: int = 500,
    difficulty: str = "easy",
    image_size: int = 64,
    seed: int = 0,
    colour_lures: float = 0.0,
    on_error: str = "raise",
) -> MultimodalDataset:
    """The shapes benchmark (all five languages generated), read back through the jsonl reader.

    Args:
        languages: keep only these languages (None: all).
        generate: create the data in ``root`` if it is not there; if False a missing dataset is an error.
        colour_lures: ``easy`` only: the fraction of false statements that name the object's colour with another
            shape (otherwise a false statement names any of the 19 other combinations, and only 3 of them share the
            colour). Both labels keep a uniform image and statement; only shape tells these false ones apart.
    """
    if split not in SPLITS:
        raise SplitNotFoundError(split, root, SPLITS, _hint(split, SPLITS).strip())
    root_path = Path(root)
    if generate:
        generate_shapes(root_path, n_train, n_val, n_test, LANGUAGES, difficulty, image_size, seed, colour_lures)
    elif not (root_path / "meta.json").is_file():
        raise FileNotFoundError(f"no shapes dataset in {root}; pass generate=True or call data.generate_shapes")
    if languages is not None:
        for lang in languages:
            if lang not in LANGUAGES:
                raise ValueError(f"unsupported language {lang!r}; supported: {', '.join(LANGUAGES)}")
    return read_jsonl(root_path / f"{split}.jsonl", root_path, LABEL_NAMES, languages, on_error=on_error)
