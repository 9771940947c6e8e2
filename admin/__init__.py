"""Admin: reproduce "Understanding the Difficulty of Training Transformers".

* ``admin/fairseq_plugin/``: the fairseq plugin (``--user-dir admin/fairseq_plugin``):
  the ``admin_transformer`` model family, its ``--init-type`` variants and ``radam``;
* the pipeline steps, each a module with a CLI that a Snakemake rule calls, in the DAG's
  order: ``admin.data`` (download, prepare or the demo corpus, tokenize, bpe, binarize),
  ``admin.recipe``, ``admin.profile_run``, ``admin.train``, ``admin.average``,
  ``admin.evaluate``, ``admin.table``, ``admin.plots``; ``admin.analysis`` (the paper's
  analyses); ``admin.budget`` (what a target costs);
* ``admin.common``: the helpers they share.
"""

__version__ = "0.1.0"
