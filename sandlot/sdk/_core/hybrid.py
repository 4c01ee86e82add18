"""A method callable on an instance for its own sandbox, or on the class with a sandbox id.

``Sandbox.kill("sbx-1")`` and ``sbx.kill()`` are the same operation; the first must not cost a
connect first (a CLI killing a sandbox by id has nothing else to do with it). The e2b SDK offers
the same pair, so its users expect it.

Each operation is written once, as an ordinary method. Reached through an instance, ``hybrid``
hands the bound method back unchanged. Reached through the class, it hands back a function that
takes the sandbox id first plus ``api_url``/``api_key``/``config``, and passes all of it to the
owner's ``_detached`` classmethod: that opens a connection for the one call, builds a stand-in
sandbox for the id on it, runs the method there and closes the connection. Because the
descriptor only routes calls, it is the same for both flavours; the I/O lives in ``_detached``,
which ``scripts/unasync.py`` rewrites like any other code.

Example:
    >>> class Thing:
    ...     def __init__(self, thing_id): self.thing_id = thing_id
    ...     @classmethod
    ...     def _detached(cls, method, sandbox_id, args, kwargs, api_url, api_key, config):
    ...         return method(cls(sandbox_id), *args, **kwargs)
    ...     @hybrid
    ...     def name(self, suffix=""): return f"thing {self.thing_id}{suffix}"
    >>> Thing("1").name(), Thing.name("7", "!")
    ('thing 1', 'thing 7!')
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, cast, overload

if TYPE_CHECKING:
    from sandlot.sdk._core.config import ConnectionConfig

__all__ = ["OnClass", "hybrid"]

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

# What the class form's first argument is: the sandbox's id, an optional one (a list over the
# team when left out), or nothing (the operation names something else, such as a snapshot).
Takes = Literal["sandbox_id", "optional_sandbox_id", "nothing"]


class OnClass(Protocol[R_co]):
    """The class form: the method's arguments after the sandbox id, and where the server is."""

    def __call__(
        self,
        *args: Any,
        api_url: str | None = None,
        api_key: str | None = None,
        config: ConnectionConfig | None = None,
        **kwargs: Any,
    ) -> R_co: ...


class hybrid(Generic[S, P, R]):  # lower case: used as a decorator, named like one
    """Run the decorated method on the instance, or (on the class) on a stand-in for an id.

    Use it bare (``@hybrid``), or as ``@hybrid.taking("nothing")`` for an operation whose class
    form takes no sandbox id.
    """

    def __init__(self, method: Callable[Concatenate[S, P], R], takes: Takes = "sandbox_id") -> None:
        self._method = method
        self._takes = takes
        self.__doc__ = method.__doc__

    @staticmethod
    def taking(takes: Takes) -> Callable[[Callable[Concatenate[S, P], R]], hybrid[S, P, R]]:
        """``@hybrid`` for a method whose class form takes ``takes`` first."""
        return lambda method: hybrid(method, takes)

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    @overload
    def __get__(self, instance: None, owner: type[S]) -> OnClass[R]: ...

    @overload
    def __get__(self, instance: S, owner: type[S] | None = None) -> Callable[P, R]: ...

    def __get__(self, instance: S | None, owner: type[S] | None = None) -> OnClass[R] | Callable[P, R]:
        if instance is not None:
            return cast("Callable[P, R]", types.MethodType(self._method, instance))
        return self._on_class(owner)

    def _on_class(self, owner: Any) -> OnClass[R]:
        method, takes = self._method, self._takes

        @functools.wraps(method)
        def on_class(
            *args: Any,
            api_url: str | None = None,
            api_key: str | None = None,
            config: ConnectionConfig | None = None,
            **kwargs: Any,
        ) -> R:
            sandbox_id: str | None = None
            if takes != "nothing":
                if "sandbox_id" in kwargs:
                    sandbox_id = kwargs.pop("sandbox_id")
                elif args:
                    sandbox_id, args = args[0], args[1:]
                elif takes == "sandbox_id":
                    raise TypeError(f"{method.__name__}() on the class needs the sandbox's id first")
            result: R = owner._detached(method, sandbox_id, args, kwargs, api_url, api_key, config)
            return result

        del on_class.__wrapped__  # `help()` shows the class form's own signature, not the method's
        return on_class
