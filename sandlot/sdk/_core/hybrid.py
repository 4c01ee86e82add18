"""A method callable on an instance for its own sandbox, or on the class with a sandbox id.

``Sandbox.kill("sbx-1")`` and ``sbx.kill()`` are the same operation; the first must not cost a
connect first (a CLI killing a sandbox by id has nothing else to do with it). The e2b SDK offers
the same pair, so its users expect it.

Each operation is written once, as an ordinary method. Reached through an instance, ``hybrid``
hands back the bound method. Reached through the class, it hands back the owner's
``_detached`` classmethod with the method bound in: ``_detached`` takes the sandbox id off the
arguments (:func:`split_target`), opens a connection from ``api_url``/``api_key``/``config``
for the one call, runs the method on a stand-in sandbox for the id and closes the connection.
The descriptor only routes calls, so it is the same for both flavours; the I/O is in
``_detached``, which ``scripts/unasync.py`` rewrites like any other code (and the class form of
an async operation is a coroutine function, as ``inspect`` sees it).

Example:
    >>> class Thing:
    ...     def __init__(self, thing_id): self.thing_id = thing_id
    ...     @classmethod
    ...     def _detached(cls, method, takes, /, *args, **kwargs):
    ...         thing_id, args, kwargs = split_target(takes, args, kwargs)
    ...         return method(cls(thing_id), *args, **kwargs)
    ...     @hybrid
    ...     def name(self, suffix=""): return f"thing {self.thing_id}{suffix}"
    >>> Thing("1").name(), Thing.name("7", "!"), Thing.name(sandbox_id="8")
    ('thing 1', 'thing 7!', 'thing 8')
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

if TYPE_CHECKING:
    from sandlot.sdk._core.config import ConnectionConfig

__all__ = ["OnClass", "Takes", "hybrid", "split_target"]

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

# What the class form's first argument is: the sandbox's id, an optional one (a list over the
# team when left out), or nothing (the operation names something else, such as a snapshot).
Takes = Literal["sandbox_id", "optional_sandbox_id", "nothing"]


class OnClass(Protocol[R_co]):
    """The class form: the sandbox id, the method's other arguments, and where the server is."""

    def __call__(
        self,
        *args: Any,
        api_url: str | None = None,
        api_key: str | None = None,
        config: ConnectionConfig | None = None,
        **kwargs: Any,
    ) -> R_co: ...


def split_target(
    takes: Takes, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, tuple[Any, ...], dict[str, Any]]:
    """The sandbox id a class-form call names (first, or as ``sandbox_id=``), and the rest.

    Example:
        >>> split_target("sandbox_id", ("sbx-1", 60), {})
        ('sbx-1', (60,), {})
        >>> split_target("optional_sandbox_id", (), {"limit": 3})
        (None, (), {'limit': 3})
    """
    if takes == "nothing":
        return None, args, kwargs
    if "sandbox_id" in kwargs:
        kwargs = dict(kwargs)
        return kwargs.pop("sandbox_id"), args, kwargs
    if args:
        return args[0], args[1:], kwargs
    if takes == "sandbox_id":
        raise TypeError("on the class, this operation needs the sandbox's id first")
    return None, args, kwargs


class _Taking:
    """The decorator ``hybrid.taking(takes)`` returns (a class, so that it stays generic)."""

    def __init__(self, takes: Takes) -> None:
        self._takes = takes

    def __call__(self, method: Callable[Concatenate[S, P], R]) -> hybrid[S, P, R]:
        return hybrid(method, self._takes)


class hybrid(Generic[S, P, R]):  # lower case: used as a decorator, named like one
    """Run the decorated method on the instance, or (on the class) on a stand-in for an id.

    Use it bare (``@hybrid``), or as ``@hybrid.taking("nothing")`` for an operation whose class
    form takes no sandbox id.

    Attributes:
        method: The operation, as written.
    """

    def __init__(self, method: Callable[Concatenate[S, P], R], takes: Takes = "sandbox_id") -> None:
        self.method = method
        self._takes = takes
        self.__doc__ = method.__doc__

    @staticmethod
    def taking(takes: Takes) -> _Taking:
        """``@hybrid`` for a method whose class form takes ``takes`` first."""
        return _Taking(takes)

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    @overload
    def __get__(self, instance: None, owner: type[S]) -> OnClass[R]: ...

    @overload
    def __get__(self, instance: S, owner: type[S] | None = None) -> Callable[P, R]: ...

    def __get__(self, instance: S | None, owner: type[S] | None = None) -> OnClass[R] | Callable[P, R]:
        if instance is not None:
            return cast("Callable[P, R]", types.MethodType(self.method, instance))
        on_class = functools.partial(cast(Any, owner)._detached, self.method, self._takes)
        functools.update_wrapper(on_class, self.method)
        delattr(on_class, "__wrapped__")  # `help()` shows the class form's own signature, not the method's
        return cast("OnClass[R]", on_class)
