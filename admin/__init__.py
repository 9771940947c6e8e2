"""Admin: reproduce "Understanding the Difficulty of Training Transformers".

Two halves live in this package:

* the fairseq plugin (``admin.fairseq_plugin``): the ``admin_transformer`` model
  family, its ``--init-type`` variants and the ``radam`` optimizer.  fairseq
  imports this package through ``--user-dir admin/``;
* the pipeline steps (``admin.data``, ...), each a small module with a CLI that
  the Snakemake rules call.

Registering the plugin imports fairseq (slow), so it only happens when fairseq
is already loaded, i.e. when fairseq imports us via ``--user-dir``.  Code that
wants the plugin explicitly imports ``admin.fairseq_plugin``.
"""

import sys

__version__ = "0.1.0"

if "fairseq" in sys.modules:
    from admin import fairseq_plugin  # noqa: F401  (registers model, optimizer)
