"""fairseq plugin: ``--user-dir admin/`` registers the ``admin_transformer``
model family, its arch presets and the ``radam`` optimizer."""

from admin.checkpoints import allow_fairseq_checkpoints
from admin.fairseq_plugin import model, radam  # noqa: F401  (registration side effects)

allow_fairseq_checkpoints()
