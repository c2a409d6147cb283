"""The project's Ansible plugins as modules of their own, imported as Ansible's loader would (no toolkit on the path
needed: plugins never import it)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[3]


def load_plugin(relative_path: str, name: str) -> ModuleType:
    """plugins/RELATIVE_PATH as the module NAME, loaded once per session."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "plugins" / relative_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module
