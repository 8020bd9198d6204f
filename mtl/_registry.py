"""Classes that register themselves under the name configs use.

A kind of component (weightings, backbones, architectures, self-supervised
objectives, regularisers) keeps a ``name → class`` dict next to its base
class, whose ``__init_subclass__`` calls :func:`register`; its package's
``__init__`` calls :func:`import_modules`, so that every module in the
package is imported and every class in it registered.  A new component is
then one new file, and no list anywhere names it.  (``adapt`` keeps its own
copy of these few lines: the two libraries import nothing from each other.)
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, MutableMapping


def register(registry: MutableMapping[str, type], cls: type) -> None:
    """Add ``cls`` to ``registry`` under ``cls.name`` when the class body itself sets a name.

    Base classes (no name) and subclasses that keep their parent's name are left out.  Two different
    classes claiming one name is a ``TypeError`` (typically a copied module whose name was not changed);
    the same class defined again (a module reloaded) replaces itself.
    """
    name = cls.__dict__.get("name")
    if not name:
        return
    known = registry.get(name)
    if known is not None and _qualified(known) != _qualified(cls):
        raise TypeError(f"{_qualified(cls)} and {_qualified(known)} both register as {name!r}; rename one")
    registry[name] = cls


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` found on ``path`` (its ``__path__``), registering their classes."""
    for module in pkgutil.iter_modules(list(path)):
        importlib.import_module(f"{package}.{module.name}")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
