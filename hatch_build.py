"""Build hook: the wheel ships compiled message catalogues (``.mo``, not kept in git), compiled
from the ``.po`` files by the same code as ``make messages`` (workers/i18n/catalogues.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CompileCatalogues(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        path = Path(self.root) / "workers" / "i18n" / "catalogues.py"
        spec = importlib.util.spec_from_file_location("callvault_catalogues", path)
        assert spec is not None and spec.loader is not None
        catalogues = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(catalogues)
        for written in catalogues.compile_all():
            build_data["artifacts"].append(written.relative_to(self.root).as_posix())
