"""crossfuse: fuse text and images, transfer and merge models.

The library lives in the top-level packages (``fusion``, ``data``, ``models``, ``engine``, ``transfer``,
``merging``, ``deploy``); this package holds what sits beside them: the one component registry (imported by every
floor, so it imports nothing of the project) and the ``crossfuse`` command line (which imports everything).
"""

__version__ = "0.2.0"
