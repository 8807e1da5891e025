"""Make a trained run multilingual: ``python distill_multilingual.py runs/en_model --out runs/en_model_ml``.

Multilingual knowledge distillation (Reimers & Gurevych 2020): the run's own text tower is the frozen teacher, a
copy of it the student, trained on parallel sentences (default: ``<data.root>/parallel.tsv``) so that the student
embeds a sentence and its translation where the teacher embeds the sentence. The student then replaces the text
tower (``text.*``) of the run's model, and the result is written as a new run folder that ``evaluate.py`` reads:
``config.yaml``, ``model/`` and ``distill.json`` (translation-retrieval accuracy before and after).

The command lives in ``crossfuse/commands/distill_multilingual.py`` (``crossfuse distill-multilingual ...`` once
installed); this script keeps ``python distill_multilingual.py ...`` working in a checkout.
"""

from crossfuse.commands.distill_multilingual import main

if __name__ == "__main__":
    from crossfuse.cli import run

    run(main)
