"""``sandlot.__all__`` is the SDK's front door, and nothing else in the package may shadow it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import sandlot
from sandlot import sdk


def _children() -> list[str]:
    """Every module and package directly below ``sandlot``, namespace packages (no __init__) too."""
    root = Path(sandlot.__file__).parent
    return sorted(
        p.stem
        for p in root.iterdir()
        if not p.name.startswith(("_", "."))
        and ((p.is_dir() and any(p.glob("*.py"))) or p.suffix == ".py")
    )


def test_the_package_root_is_the_sdks_front_door() -> None:
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
    assert {name for name in sandlot.__all__ if name != "__version__"} == set(sdk.__all__)
    assert callable(sandlot.aexecute) and callable(sdk.execute)


def test_no_subpackage_shadows_a_public_name() -> None:
    # Importing `sandlot.x` binds the attribute `sandlot.x` to that module: a server package
    # named like an SDK name (`sandlot.execute`, as the runner once was) turns
    # `sandlot.execute(...)` into a module object in every process that also imports the
    # server (this one, an embedding app).
    children = _children()
    for name in children:
        importlib.import_module(f"sandlot.{name}")
    shadowed = sorted(name for name in sdk.__all__ if getattr(sandlot, name) is not getattr(sdk, name))
    assert shadowed == [], f"sandlot.{shadowed[0]} is a module, not the SDK's {shadowed[0]}"
    assert set(children) & set(sandlot.__all__) == set()


def test_sync_and_async_twins_take_the_same_arguments() -> None:
    pairs = [
        (sdk.execute, sdk.aexecute),
        (sandlot.Executor.execute, sandlot.AsyncExecutor.execute),
        (sandlot.Sandbox.create, sandlot.AsyncSandbox.create),
    ]
    for name in ("pause", "resume", "fork", "restart", "create_snapshot", "list_snapshots", "delete_snapshot"):
        pairs.append((getattr(sandlot.Sandbox, name), getattr(sandlot.AsyncSandbox, name)))
        pairs.append((sandlot.Sandbox.__dict__[name].method, sandlot.AsyncSandbox.__dict__[name].method))
    for sync, async_ in pairs:
        assert inspect.iscoroutinefunction(async_) and not inspect.iscoroutinefunction(sync)
        assert list(inspect.signature(sync).parameters) == list(inspect.signature(async_).parameters)


def test_every_public_name_has_a_docstring_with_an_example() -> None:
    for name in sdk.__all__:
        obj = getattr(sdk, name)
        assert obj.__doc__ and "Example" in obj.__doc__, f"{name} has no example"
    for cls in (sandlot.Sandbox, sandlot.AsyncSandbox, sandlot.Executor):
        for attr in ("pause", "resume", "fork", "restart", "create_snapshot", "list_snapshots", "delete_snapshot"):
            if hasattr(cls, attr):
                assert "Example" in (cls.__dict__[attr].__doc__ or ""), f"{cls.__name__}.{attr}"
    for attr in ("execute", "languages"):
        assert "Example" in (getattr(sandlot.Executor, attr).__doc__ or "")


def test_both_forms_of_an_instance_or_class_call_show_its_docstring() -> None:
    for cls in (sandlot.Sandbox, sandlot.AsyncSandbox):
        for name in ("kill", "pause", "fork", "create_snapshot"):
            doc = cls.__dict__[name].__doc__
            assert getattr(cls, name).__doc__ == doc  # the class form: Sandbox.pause("id")
            assert cls.__dict__[name].method.__doc__ == doc  # what sbx.pause is bound to
