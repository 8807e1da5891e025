"""Config files, installed with crossfuse as package data (``crossfuse.configs``): ``defaults.yaml`` (every key)
and the experiment, launch, DeepSpeed and merge YAMLs. No code lives here."""
