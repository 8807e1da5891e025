"""Check a dataset before training: ``python validate.py configs/experiments/hateful_memes.yaml [key=value ...]``.

Reads every configured split (train, eval, test) with ``data.on_error=skip`` and, where the dataset supports it,
every image decoded, then prints per split the usable rows, the rejected rows per reason with ``file:line``
examples (a row read from several lines, such as a CSV field after a stray quote, with its line range), the label
map (class index -> name) and counts, and duplicate ids. Exits with status 1 if any row would be rejected, an id
names several rows, or a split cannot be read (0 if the data is clean), so it can gate a job script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crossfuse.cli import flags_as_overrides, split_config_and_overrides
from data import DataError, dataset_params
from data.report import dataset_report, format_report
from engine.builders import build_dataset
from engine.config import load_config


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="*", help="an experiment YAML, then dotted overrides (data.root=...)")
    parser.add_argument("--no-decode", action="store_true", help="only check that image files exist (faster)")
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    args = parser.parse_args(flags_as_overrides(argv))
    experiment, overrides = split_config_and_overrides(args.config)
    name = load_config(experiment, overrides).data.name
    extra = ["data.on_error=skip"]
    if "check_images" in dataset_params(name) and not args.no_decode:
        extra.append("data.params.check_images=true")
    cfg = load_config(experiment, overrides + extra)
    splits = dict.fromkeys(s for s in (cfg.data.train_split, cfg.data.eval_split, cfg.data.test_split) if s)
    report = {}
    for split in splits:
        try:
            report[split] = dataset_report(build_dataset(cfg, split))
        except (FileNotFoundError, DataError) as err:  # a missing split, or labels that cannot be told apart
            report[split] = {"error": str(err)}
            print(f"[{split}] cannot be read: {err}")
            continue
        print(format_report(split, report[split]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


def is_clean(report: dict) -> bool:
    return all("error" not in r and not r["skipped"] and not r["duplicate_ids"] for r in report.values())


def exit_status(report: dict) -> int:
    """1 if any row would be rejected, an id is duplicated or a split cannot be read, so ``validate`` can gate a
    job script."""
    return 0 if is_clean(report) else 1
