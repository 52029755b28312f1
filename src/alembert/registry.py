"""Registries: the named parts a recipe picks by key. Built-ins register on import; a recipe's `imports:` list
loads a user's module (a dotted name, or a .py file) that registers its own with the same decorators.

    from alembert.registry import PLUGINS
    @PLUGINS.register("my_plugin")
    class MyPlugin(Plugin): ...
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Generic, TypeVar

from alembert.errors import AlembertError, printable

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by key, in registration order. `version` grows with every registration, so a schema built from the
    registries knows when to rebuild itself."""

    version = 0  # shared by every registry

    def __init__(self, what: str):
        self.what = what  # 'plugin', 'loss', ... as messages say it
        self._entries: dict[str, T] = {}

    def register(self, key: str, entry: T | None = None) -> Callable[[T], T] | T:
        """`REGISTRY.register("key", obj)`, or `@REGISTRY.register("key")` over a class or function."""
        def add(value: T) -> T:
            if key in self._entries and self._entries[key] is not value:
                raise AlembertError(f"{self.what} '{key}' is registered twice (by {_origin(self._entries[key])} "
                                    f"and {_origin(value)}); choose another key")
            self._entries[key] = value
            Registry.version += 1
            return value

        return add if entry is None else add(entry)

    def get(self, key: str, where: str = "") -> T:
        if key not in self._entries:
            raise AlembertError(f"{where}{': ' if where else ''}unknown {self.what} '{printable(key)}'"
                                f"{suggest(key, self._entries)}")
        return self._entries[key]

    def __contains__(self, key) -> bool:
        return key in self._entries

    def items(self):
        return list(self._entries.items())

    def keys(self) -> list[str]:
        return list(self._entries)


def suggest(key, known) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f" ({hint}known: {', '.join(known)})"


def _origin(value) -> str:
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"


LOSSES: Registry = Registry("loss")  # type -> LossEntry (engine/terms.py)
PLUGINS: Registry = Registry("plugin")  # type -> Plugin subclass (engine/plugins.py)
INITIALISERS: Registry = Registry("student initialiser")  # init -> build(recipe, teachers, task, data) function
COMBINATIONS: Registry = Registry("teacher-combination rule")  # rule -> (B, K) weights function
SOURCES: Registry = Registry("data source")  # type -> source spec class with a load() method
SAMPLERS: Registry = Registry("sampler")  # type -> batch sampler spec class
STEPS: Registry = Registry("step strategy")  # type -> step strategy class


def import_modules(names: list[str], base: Path | None = None, where: str = "imports") -> None:
    """Import each entry of a recipe's `imports:`: a module name on the path, or a .py file (relative to `base`,
    the recipe's folder). Their registrations take effect before the recipe is validated."""
    for i, name in enumerate(names):
        field = f"{where}.{i}"
        if not isinstance(name, str) or not name.strip():
            raise AlembertError(f"{field}: expected a module name or a .py file, got {name!r}")
        try:
            if name.endswith(".py"):
                path = Path(name).expanduser()
                if not path.is_absolute() and base is not None:
                    path = base / path
                if not path.is_file():
                    raise AlembertError(f"{field}: no such file {path}")
                module_name = f"alembert_user_{path.stem}_{abs(hash(str(path.resolve())))}"
                if module_name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]
                    raise
            else:
                importlib.import_module(name)
        except AlembertError:
            raise
        except ImportError as err:
            raise AlembertError(f"{field}: cannot import '{name}' ({err})") from err
        except Exception as err:  # noqa: BLE001 - a user's module failing at import is their bad input
            raise AlembertError(f"{field}: importing '{name}' failed ({type(err).__name__}: {err})") from err
