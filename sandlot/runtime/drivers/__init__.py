"""Runtime drivers, found by name through the ``sandlot.runtime_drivers`` entry points.

A driver outside this package registers itself in its own pyproject::

    [project.entry-points."sandlot.runtime_drivers"]
    mydriver = "mypackage.driver:MyDriver"
"""

from __future__ import annotations

from importlib.metadata import entry_points

from sandlot.runtime import errors

__all__ = ["load"]

GROUP = "sandlot.runtime_drivers"


def load(name: str) -> type:
    """The driver class registered as ``name``."""
    found = entry_points(group=GROUP, name=name)
    if not found:
        known = sorted(ep.name for ep in entry_points(group=GROUP))
        raise errors.RuntimeDriverError(f"no runtime driver {name!r}; installed: {', '.join(known) or 'none'}")
    driver: type = next(iter(found)).load()
    return driver
