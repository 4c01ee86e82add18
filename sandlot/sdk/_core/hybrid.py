"""A method callable on the class with a sandbox id, or on an instance for its own sandbox.

``Sandbox.kill("sbx-1")`` and ``sbx.kill()`` are the same operation; the first must not cost a
connect first (a CLI killing a sandbox by id has nothing else to do with it). The e2b SDK offers
the same pair, so its users expect it. The descriptor only picks which function to bind: both
are ordinary methods, so ``scripts/unasync.py`` rewrites them like any other code.

Example:
    >>> class Thing:
    ...     def _name_of(self): return "instance"
    ...     @classmethod
    ...     def _name_for(cls, thing_id): return f"class {thing_id}"
    ...     name = hybrid(_name_of, _name_for)
    >>> Thing().name(), Thing.name("7")
    ('instance', 'class 7')
"""

from __future__ import annotations

from typing import Any

__all__ = ["hybrid"]


class hybrid:  # lower case: used like a decorator, named like one
    """Bind ``on_instance`` when reached through an instance, ``on_class`` through the class."""

    def __init__(self, on_instance: Any, on_class: Any, doc: str | None = None) -> None:
        self._on_instance = on_instance
        self._on_class = on_class
        self.__doc__ = doc or on_instance.__doc__
        # `help(sbx.kill)` and `help(Sandbox.kill)` show the bound function: give both the doc.
        for function in (on_instance, getattr(on_class, "__func__", on_class)):
            if function.__doc__ is None:
                function.__doc__ = self.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self._on_class.__get__(owner, owner)
        return self._on_instance.__get__(instance, owner)
