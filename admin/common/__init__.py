"""Helpers shared by the pipeline steps, the workflow and the fairseq plugin.

None of them imports a step (``admin.train``, ``admin.evaluate``, ...), and the plugin
imports only the few it needs (profiling, variants, checkpoints); none imports fairseq
at module level except where a docstring says so.
"""
