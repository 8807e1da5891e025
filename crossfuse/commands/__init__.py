"""The subcommands of ``crossfuse``, one module each, each a ``main(argv=None)`` over library calls.

A command imports only what it needs, so ``crossfuse merge`` does not pay for the training stack; commands that
build tasks import ``transfer`` and ``merging``, whose tasks register themselves when imported.
"""
