"""Upload a trained model to the HuggingFace Hub: ``crossfuse push RUN org/name [--private] [--revision BRANCH]``.

``RUN`` is a run folder (its ``model/`` is uploaded, with the run's ``config.yaml`` and ``metrics.json`` under
``run/``) or a model folder written by ``save_pretrained``. The model card (``README.md``) written at training goes
with it. Authentication is huggingface_hub's own (``hf auth login`` or ``HF_TOKEN``). Load it back anywhere with
``MultimodalModel.from_pretrained("org/name")``.
"""

from __future__ import annotations

import argparse

from models.hub import push_to_hub


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by train.py, or a save_pretrained folder")
    parser.add_argument("repo_id", help="the Hub repo to upload to, org/name (created if it does not exist)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", default=None, help="a branch to commit to (created from main if needed)")
    parser.add_argument("--license", default=None, help="the license in the uploaded card, e.g. apache-2.0")
    parser.add_argument("--message", default=None, help="the commit message")
    args = parser.parse_args(argv)
    url = push_to_hub(args.run_dir, args.repo_id, private=args.private, revision=args.revision,
                      commit_message=args.message, license=args.license)
    print(f"uploaded {args.run_dir} to {args.repo_id}: {url}")
    return url
