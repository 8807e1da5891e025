"""Figures from the result tables in docs/: ``python benchmarks/plots.py`` (a few seconds, no training).

The benchmarks write their tables into named sections of the docs (``benchmarks/_doc.py``), and the curves behind
a table that keeps only end points into ``docs/figures/*.json`` (the zoo's learning curves, the merges' lambda
sweep); this script reads those back, draws one figure per result (matplotlib), saves it under ``docs/figures/`` and
embeds it right after
the section it comes from, in a section of its own (``<!-- figure-NAME:start -->``), so rerunning a benchmark and
then this script refreshes both the table and its figure. ``--quickstart RUN`` also runs ``evaluate.py RUN
--plots`` on a quickstart run and copies its confusion matrix, reliability diagram and learning curves into
docs/figures/.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _doc import DOCS, write_section

from engine.plots import _figure

FIGURES = DOCS / "figures"
COMMAND = "python benchmarks/plots.py"
_NUMBER = re.compile(r"^\s*(-?[\d.]+)(?:\s*±\s*([\d.]+))?\s*$")


# ------------------------------------------------------------------------------------------------ reading tables
def section(page: str, name: str) -> str:
    """The text between ``<!-- name:start -->`` and ``<!-- name:end -->`` of ``docs/page``."""
    text = (DOCS / page).read_text()
    match = re.search(rf"<!-- {re.escape(name)}:start -->(.*?)<!-- {re.escape(name)}:end -->", text, re.S)
    if match is None:
        raise KeyError(f"docs/{page} has no section {name!r}: run the benchmark that writes it first")
    return match.group(1)


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table in ``text`` as (header, rows of cells)."""
    found, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif block:
            if len(block) > 2:
                found.append((block[0], block[2:]))
            block = []
    return found


def number(cell: str) -> tuple[float, float]:
    """``'91.6 ± 0.4'`` -> (91.6, 0.4); ``'0.551'`` -> (0.551, 0.0); anything else -> (nan, nan)."""
    match = _NUMBER.match(cell.replace("−", "-"))
    if match is None:
        return float("nan"), float("nan")
    return float(match.group(1)), float(match.group(2) or 0.0)


def method(cell: str) -> str:
    return cell.replace("`", "").replace(" (baseline)", "*")


# ------------------------------------------------------------------------------------------------ figures
def fusion_zoo() -> tuple:
    """Accuracy of every fusion method on frozen towers: easy, binding, binding with attribute towers."""
    settings = [("zoo_easy", "easy, towers from easy", "#9DB4D6"), ("zoo_binding", "binding, same towers", "#4C72B0"),
                ("zoo_binding_attributes", "binding, attribute towers", "#DD8452")]
    results = {}
    for name, _, _ in settings:
        header, rows = tables(section("fusion_zoo.md", name))[0]
        column = header.index("accuracy %")
        results[name] = {method(r[0]): number(r[column]) for r in rows}
    order = sorted(results["zoo_binding_attributes"], key=lambda m: results["zoo_binding_attributes"][m][0])
    fig, ax = _figure(7.0, 0.28 * len(order) + 1.6)
    y = np.arange(len(order))
    for offset, (name, label, colour) in zip((-0.27, 0.0, 0.27), settings):
        values = [results[name].get(m, (np.nan, 0.0)) for m in order]
        ax.barh(y + offset, [v[0] for v in values], height=0.26, xerr=[v[1] for v in values], color=colour,
                label=label, error_kw={"lw": 0.8})
    ax.axvline(50, ls="--", color="grey", lw=1, label="chance (50%)")
    ax.set_yticks(y, order, fontsize=8)
    ax.set_xlim(40, 100)
    ax.set_xlabel("test accuracy % (mean ± std over 3 seeds; * baseline)")
    ax.set_title("Fusion methods on frozen towers")
    ax.legend(loc="lower right", fontsize=7)
    caption = ("Test accuracy of every fusion method trained on frozen towers, three settings of the tables above "
               "(bars: mean, whiskers: std over 3 seeds). Only methods whose text attends over the image's locations "
               "bind colour and shape once the towers know both.")
    return fig, "fusion_zoo.md", "zoo_binding_attributes", "fusion_zoo_frozen", caption


def _heat(ax, matrix: np.ndarray, rows: list[str], columns: list[str], title: str, vmin: float, vmax: float,
          fmt: str):
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = matrix[i, j]
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=7,
                    color="black" if value > vmin + 0.6 * (vmax - vmin) else "white")
    ax.set_title(title, fontsize=9)
    return image


def crosslingual() -> tuple:
    """Per-language accuracy of an English-only model and its distilled multilingual student, two text towers."""
    panels = [("crosslingual", "tiny BERT (from scratch)"), ("crosslingual-minilm", "MiniLM-L6 (pretrained)")]
    fig, axes = _figure(7.0, 2.6)
    fig.delaxes(axes)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (name, title) in zip(axes, panels):
        header, rows = tables(section("transfer.md", name))[0]
        languages = header[1:6]
        matrix = np.array([[number(r[1 + j])[0] for j in range(len(languages))] for r in rows])
        image = _heat(ax, matrix, [r[0].replace("+ distilled multilingual student", "+ multilingual distillation")
                                   for r in rows], languages, title, 40, 100, ".1f")
    fig.colorbar(image, ax=list(axes), label="test accuracy %")
    fig.suptitle("Trained on English, evaluated per language", fontsize=10)
    caption = ("Accuracy per language of the English-only model and of its student distilled on parallel text "
               "(the two tables above, mean over 3 seeds; chance 50%).")
    return fig, "transfer.md", "crosslingual-minilm", "crosslingual", caption


def merging_languages() -> tuple:
    """Per-language test accuracy of each single-language model and of each merge."""
    header, rows = tables(section("merging.md", "merging_experiment"))[0]
    languages = [h for h in header[2:] if len(h) == 2]
    columns = ["all", *languages]
    matrix = np.array([[number(r[header.index(c)])[0] for c in columns] for r in rows])
    labels = [r[0].replace(" (reference)", "").replace("joint fine-tune on all languages", "joint fine-tune (all)")
              for r in rows]
    fig, ax = _figure(6.4, 0.3 * len(rows) + 1.4)
    image = _heat(ax, matrix, labels, columns, "Merging single-language models: accuracy per language", 0.4, 0.9,
                  ".2f")
    fig.colorbar(image, ax=ax, label="test accuracy (chance 0.5)")
    caption = ("Test accuracy overall and per language of the base model, the five single-language models, the "
               "joint reference and every merge (the table above).")
    return fig, "merging.md", "merging_experiment", "merging_languages", caption


def cross_architecture() -> tuple:
    """Student alone against the same student distilled, per teacher-student pair, with the teacher's accuracy."""
    header, rows = tables(section("transfer.md", "crossarch"))[0]
    pairs = [r[0].replace(" (logits)", "").replace(" (logits + features)", " (+ features)").replace(" -> ", " → ")
             for r in rows]
    teacher = [number(r[1])[0] for r in rows]
    alone, distilled = [number(r[2]) for r in rows], [number(r[3]) for r in rows]
    fig, ax = _figure(7.0, 3.6)
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [a[0] for a in alone], 0.4, yerr=[a[1] for a in alone], color="#9DB4D6", label="student alone")
    ax.bar(x + 0.2, [d[0] for d in distilled], 0.4, yerr=[d[1] for d in distilled], color="#DD8452",
           label="student + distillation")
    ax.scatter(x, teacher, marker="_", s=600, color="black", label="teacher", zorder=3)
    ax.axhline(25, ls="--", color="grey", lw=1, label="chance (25%)")
    ax.set_xticks(x, [textwrap.fill(p, 22) for p in pairs], fontsize=7)
    ax.set_ylabel("validation accuracy % (3 seeds)")
    ax.set_ylim(0, 105)
    ax.set_title("Cross-architecture distillation")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncols=4, markerscale=0.4)
    caption = ("Each student trained alone and distilled from its teacher (the table above; whiskers: std over 3 "
               "seeds). Distillation pays off when labels are scarce (2% of the rows).")
    return fig, "transfer.md", "crossarch", "cross_architecture", caption


def zoo_learning_curves() -> tuple:
    """Validation accuracy during training of every fusion method trained end to end, per seed."""
    data = json.loads((FIGURES / "fusion_zoo_end_to_end.json").read_text())
    runs = {m: r for m, r in data["runs"].items() if r}
    final = {m: np.mean([seed["val/accuracy"][-1][1] for seed in r]) for m, r in runs.items()}
    order = sorted(runs, key=lambda m: -final[m])
    cols = 5
    rows = -(-len(order) // cols)
    fig, ax = _figure(7.0, 1.25 * rows + 0.7)
    fig.delaxes(ax)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, name in zip(axes, order):
        curves = [np.array(seed["val/accuracy"]) for seed in runs[name]]
        for curve in curves:
            ax.plot(curve[:, 0], 100 * curve[:, 1], color="#4C72B0", lw=0.8, alpha=0.6)
        steps = curves[0][:, 0]
        if all(len(c) == len(steps) for c in curves):
            ax.plot(steps, 100 * np.mean([c[:, 1] for c in curves], axis=0), color="black", lw=1.4)
        ax.axhline(50, ls="--", color="grey", lw=0.7)
        ax.set_title(name + (" *" if name in ("text_only", "image_only") else ""), fontsize=8, pad=2)
        ax.tick_params(labelsize=6)
        ax.set_ylim(40, 100)
    for ax in axes[len(order):]:
        ax.set_visible(False)
    fig.supxlabel("training step (batch 64)", fontsize=8)
    fig.supylabel("validation accuracy %", fontsize=8)
    fig.suptitle(f"End-to-end fusion zoo: learning curves ({data['steps']} steps; blue: each seed, black: mean)",
                 fontsize=9)
    caption = ("Validation accuracy of each method during its end-to-end runs (the table above; 500 validation "
               "examples, chance 50% dashed, * baseline), ordered by final mean accuracy. Curves from "
               "`docs/figures/fusion_zoo_end_to_end.json`, written by the zoo benchmark.")
    return fig, "fusion_zoo.md", "zoo_end_to_end", "fusion_zoo_curves", caption


def merging_lambda() -> tuple:
    """Accuracy of task arithmetic, TIES and DARE as their scale lambda goes from 0.1 to 1."""
    data = json.loads((FIGURES / "merging_lambda.json").read_text())
    fig, ax = _figure(6.4, 3.4)
    colours = {"task arithmetic": "#4C72B0", "ties": "#DD8452", "dare": "#55A868"}
    for method, curve in data["scales"].items():
        curve = np.array(curve)
        colour = colours.get(method, None)
        ax.plot(curve[:, 0], 100 * curve[:, 2], marker="o", ms=3, color=colour, label=f"{method} (test)")
        ax.plot(curve[:, 0], 100 * curve[:, 1], ls=":", color=colour, label=f"{method} (val)")
        best = int(np.argmax(curve[:, 1]))  # the scale the benchmark keeps: best on validation
        ax.scatter([curve[best, 0]], [100 * curve[best, 2]], s=60, facecolors="none", edgecolors=colour, zorder=3)
    ax.axhline(100 * data["base"][1], color="grey", lw=1, ls="--", label="base (test)")
    ax.axhline(100 * data["uniform soup"][1], color="black", lw=1, ls="-.", label="uniform soup (test)")
    ax.set_xlabel("lambda (scale of the merged task vector)")
    ax.set_ylabel("accuracy %, all languages (chance 50)")
    ax.set_title("Merging five single-language models: accuracy against lambda", fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside right center")
    caption = ("Test (solid) and validation (dotted) accuracy of each scaled merge of the five single-language "
               "models; circles: the lambda chosen on validation, the one in the table above. Curves from "
               "`docs/figures/merging_lambda.json`, written by the merging benchmark.")
    return fig, "merging.md", "merging_experiment", "merging_lambda", caption


FIGURES_FROM_TABLES: list[Callable[[], tuple]] = [fusion_zoo, zoo_learning_curves, crosslingual, merging_languages,
                                                  merging_lambda, cross_architecture]


# ------------------------------------------------------------------------------------------------ embedding
def embed(page: str, after: str, name: str, alt: str, caption: str, command: str = COMMAND) -> None:
    """Put ``figures/name.png`` with its caption and command in section ``figure-name`` right after ``after``."""
    path = DOCS / page
    text = path.read_text()
    block = (f"<!-- figure-{name}:start -->\n![{alt}](figures/{name}.png)\n\n"
             f"*{caption} Drawn by `{command}`.*\n<!-- figure-{name}:end -->")
    pattern = re.compile(rf"<!-- figure-{re.escape(name)}:start -->.*?<!-- figure-{re.escape(name)}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        end = f"<!-- {after}:end -->"
        if end not in text:
            raise KeyError(f"docs/{page} has no section {after!r} to put figure {name!r} after")
        text = text.replace(end, f"{end}\n\n{block}", 1)
    path.write_text(text)


def save(fig, name: str) -> Path:
    FIGURES.mkdir(parents=True, exist_ok=True)
    out = FIGURES / f"{name}.png"
    fig.savefig(out, dpi=110)
    return out


def quickstart_figures(run: Path) -> list[Path]:
    """``evaluate.py RUN --plots`` on a quickstart run, its figures copied to ``docs/figures/quickstart_*.png``."""
    from crossfuse.commands import evaluate

    evaluate.main([str(run), "--plots", "--out", str(run / "eval.json")])
    copied = []
    for stem in ("confusion_matrix", "reliability", "learning_curves", "ablation"):
        source = run / "plots" / f"{stem}.png"
        if source.is_file():
            copied.append(Path(shutil.copyfile(source, FIGURES / f"quickstart_{stem}.png")))
    images = "\n".join(f"![{p.stem[len('quickstart_'):].replace('_', ' ')}](figures/{p.name})" for p in copied)
    how = (f"The quickstart run's test split: `python train.py configs/experiments/quickstart.yaml` then `{COMMAND} "
           "--quickstart runs/quickstart` (which runs `evaluate.py runs/quickstart --plots`).")
    write_section("sweeps.md", "quickstart-figures", f"{images}\n\n*{how}*")
    return copied


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quickstart", type=Path, default=None, help="a quickstart run folder (runs/quickstart)")
    args = parser.parse_args(argv)
    written = []
    for build in FIGURES_FROM_TABLES:
        fig, page, after, name, caption = build()
        written.append(save(fig, name))
        embed(page, after, name, build.__doc__.strip().splitlines()[0].rstrip("."), caption)
    if args.quickstart is not None:
        FIGURES.mkdir(parents=True, exist_ok=True)
        written += quickstart_figures(args.quickstart)
    for path in written:
        print(f"wrote {path.relative_to(DOCS.parent)}")
    return written


if __name__ == "__main__":
    main()
