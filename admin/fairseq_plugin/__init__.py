"""The fairseq plugin: ``--user-dir admin/fairseq_plugin`` registers the
``admin_transformer`` model family, its arch presets and the ``radam`` optimizer.

fairseq imports this folder as the top-level module ``fairseq_plugin`` (as it does every
``--user-dir``), so its own modules import each other relatively.  Code that needs the
plugin in-process loads it the same way, with
:func:`admin.common.fairseq_command.load_plugin`; importing it as ``admin.fairseq_plugin``
would register the model a second time, and is refused.
"""

if __name__ != "fairseq_plugin":
    raise ImportError(
        f"the fairseq plugin was imported as {__name__!r}: load it as fairseq does, with "
        "admin.common.fairseq_command.load_plugin() (or --user-dir admin/fairseq_plugin)"
    )

from admin.common.checkpoints import allow_fairseq_checkpoints  # noqa: E402

from . import model, radam  # noqa: E402, F401  (registration side effects)

allow_fairseq_checkpoints()
