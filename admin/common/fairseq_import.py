"""Import fairseq without the metric libraries that only its unused tasks call.

fairseq imports every task and criterion module when it loads.  Two of them import
scikit-learn and ``scipy.stats`` at their top (``audio_classification`` and
``sentence_prediction``, for metrics they compute only when they run), which is 2.7 s
of the 6.2 s a ``fairseq-train`` or ``fairseq-generate`` process spends importing on a
2-core machine; no step of this project runs those tasks.

:func:`import_fairseq` imports fairseq with stand-ins registered for exactly the names
those modules import; a stand-in imports the real library the first time it is called
or asked for anything else, so a task that does use them still gets the real functions.
The stand-ins leave ``sys.modules`` as soon as fairseq is imported: a later ``import
sklearn`` in the same process is the real one.  Should fairseq import another name from
them, that import loads the real library (correct, only slower);
tests/test_fairseq_import.py checks that importing fairseq loads neither.

    python -m admin.common.fairseq_import fairseq_cli.generate ARGS...

runs a fairseq command line (its ``cli_main``) that way.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# module -> the names fairseq's modules import from it when fairseq is imported
DEFERRED: dict[str, tuple[str, ...]] = {
    "sklearn.metrics": ("f1_score", "matthews_corrcoef"),
    "scipy.stats": ("pearsonr", "spearmanr"),
}
# ``python -m FAIRSEQ_MAIN MODULE ARGS``: a fairseq command line, imported this way
FAIRSEQ_MAIN = "admin.common.fairseq_import"
# packages whose own __init__ is the slow part (scikit-learn's imports scipy.stats)
STUB_PACKAGES = ("sklearn",)
_MARK = "__admin_stand_in__"


def _is_stand_in(module: object) -> bool:
    return getattr(module, _MARK, False)


def _drop_stand_ins() -> None:
    for name in [*DEFERRED, *STUB_PACKAGES]:
        if _is_stand_in(sys.modules.get(name)):
            del sys.modules[name]


def _real(name: str) -> types.ModuleType:
    _drop_stand_ins()
    return importlib.import_module(name)


def _lazy_function(module: str, name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_real(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on its first call (admin.common.fairseq_import)"
    return call


def _stand_in(name: str, functions: Sequence[str] = ()) -> types.ModuleType:
    module = types.ModuleType(name, f"stand-in for {name} (admin.common.fairseq_import)")
    setattr(module, _MARK, True)
    for function in functions:
        setattr(module, function, _lazy_function(name, function))

    def forward(attr: str) -> Any:
        # dunders are the import system's probes (``__path__``, ``__file__``): not a use
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return getattr(_real(name), attr)

    module.__getattr__ = forward  # type: ignore[method-assign]  # PEP 562: the real module's
    return module


@contextmanager
def deferred_metric_libraries() -> Iterator[None]:
    """Stand-ins for ``DEFERRED`` while the body runs (none for a module already
    imported: the real one is then used)."""
    added = []
    for name, functions in DEFERRED.items():
        if name not in sys.modules:
            sys.modules[name] = _stand_in(name, functions)
            added.append(name)
    for package in STUB_PACKAGES:
        if package not in sys.modules:
            stub = _stand_in(package)
            stub.__path__ = []  # a package: its deferred submodules are the stand-ins
            for name in added:
                if name.startswith(f"{package}."):
                    setattr(stub, name.rpartition(".")[2], sys.modules[name])
            sys.modules[package] = stub
    try:
        yield
    finally:
        _drop_stand_ins()


def import_fairseq(module: str = "fairseq") -> types.ModuleType:
    """``import fairseq`` (every task, criterion and model module), or a module that
    imports it, without loading the deferred libraries.  A command line is imported
    itself (``fairseq_cli.train``): it sets up logging before it imports fairseq."""
    if module not in sys.modules:
        with deferred_metric_libraries():
            importlib.import_module(module)
    return sys.modules[module]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m admin.common.fairseq_import MODULE [ARGS...]")
    module = import_fairseq(argv[0])
    sys.argv = argv  # fairseq reads its options from sys.argv[1:]
    module.cli_main()


if __name__ == "__main__":
    main()
