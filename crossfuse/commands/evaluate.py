"""Evaluate a trained run: ``python evaluate.py runs/quickstart [key=value ...] [--out eval.json]``.

Reloads the run's saved config, best model and task, and evaluates the eval split and the test split the way the
run's task does at the end of training (classification: overall, per language, with the text and then the image
masked, at the thresholds saved with the model; contrastive: retrieval), prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import Accelerator

import merging.tasks  # noqa: F401  (registers its tasks: the run's task evaluates it)
import transfer  # noqa: F401
from crossfuse.cli import flags_as_overrides
from deploy import load_for_inference, resolve_folder
from engine.builders import build_dataset, build_loader, build_tokenizer
from engine.checkpoint import write_json_atomic
from engine.config import load_config, to_dict
from engine.distributed import multi_process_cpu
from engine.evaluation import evaluate_splits, format_table, load_test_split, predict, write_predictions
from engine.tasks import create_task
from models import MultimodalModel
from models.folder import load_task_state, load_thresholds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by train.py (or any saved model folder with config)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.eval_split=test")
    parser.add_argument("--out", default=None, help="where to write the JSON (default: RUN_DIR/eval.json)")
    parser.add_argument("--predictions", default=None, metavar="CSV",
                        help="also write id,proba,label for every row of the test split (labelled or not)")
    parser.add_argument("--plots", action="store_true",
                        help="write RUN_DIR/plots/*.png: confusion matrix, reliability, per language, ablations, "
                             "learning curves (on the test split, or the eval split without one)")
    args = parser.parse_intermixed_args(flags_as_overrides(argv))
    run_dir = Path(args.run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {config_path} does not exist "
                                "(train.py writes it; pass the folder train.py created under run.output_dir)")
    cfg = load_config(config_path, args.overrides)
    model_dir = resolve_folder(run_dir)  # a run's model/, or an export folder written by export.py
    acc = Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=multi_process_cpu())
    model = load_for_inference(model_dir)  # float, int8, pruned or ONNX Runtime
    task = create_task(cfg.train.task, **to_dict(cfg.train.task_params))
    if isinstance(model, MultimodalModel):  # an export is evaluated by its logits alone
        task.setup(model)
        task.place(acc.device)
        if len(task.extras):
            load_task_state(task.extras, model_dir)
            task.extras.to(acc.device)
    tokenizer = build_tokenizer(cfg, model_dir)
    loaders, languages = {}, []
    if cfg.data.eval_split:
        dataset = build_dataset(cfg, cfg.data.eval_split, cfg.data.eval_languages)
        languages = dataset.languages
        loaders["val"] = build_loader(cfg, dataset, tokenizer, model.image_data_config, False, languages)
    prepared = acc.prepare(model, *loaders.values())
    model, loaders = prepared[0], dict(zip(loaders, prepared[1:]))
    threshold = load_thresholds(model_dir, acc.unwrap_model(model).label_names)  # multi-label, tuned on val
    results = evaluate_splits(cfg, acc, task, model, tokenizer, languages, loaders, threshold=threshold)
    if args.predictions:
        test_set = build_dataset(cfg, cfg.data.test_split or cfg.data.eval_split, cfg.data.eval_languages)
        loader = acc.prepare(build_loader(cfg, test_set, tokenizer, acc.unwrap_model(model).image_data_config,
                                          False, languages))
        print(f"predictions: {write_predictions(acc, model, loader, test_set, Path(args.predictions), threshold)}")
    if args.plots and any("accuracy" in r["overall"] for r in results.values()):
        written = write_plots(acc, cfg, model, tokenizer, languages, loaders, results, run_dir)
        if acc.is_main_process:
            print(f"plots: {', '.join(str(p) for p in written)}")
    if acc.is_main_process:
        print(format_table(results))
        write_json_atomic(Path(args.out) if args.out else run_dir / "eval.json", results)
    return results


def write_plots(acc, cfg, model, tokenizer, languages, loaders, results, run_dir: Path) -> list[Path]:
    """The figures of :func:`engine.plots.run_figures` for the test split (else the eval split), as PNGs."""
    from engine.plots import run_figures

    unwrapped = acc.unwrap_model(model)
    split, loader = "val", loaders.get("val")
    if "test" in results and (test_set := load_test_split(cfg)) is not None:
        split = "test"
        loader = acc.prepare(build_loader(cfg, test_set, tokenizer, unwrapped.image_data_config, False, languages))
    pred = predict(acc, model, loader)
    figures = run_figures(results, split, pred, unwrapped.label_names, unwrapped.multi_label, run_dir / "log.jsonl")
    out = run_dir / "plots"
    written = []
    if acc.is_main_process:
        out.mkdir(exist_ok=True)
        for stem, fig in figures.items():
            fig.savefig(out / f"{stem}.png")
            written.append(out / f"{stem}.png")
    return written

