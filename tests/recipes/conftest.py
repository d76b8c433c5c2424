"""Shared fixture of the recipe tests: the shipped recipes copied to a temporary tree that load_recipe reads."""

import shutil

import pytest

from ftr import paths, recipes


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """The shipped recipes copied to a temporary tree that load_recipe reads (in-process)."""
    root = tmp_path / "recipes"
    shutil.copytree(paths.RECIPES_DIR, root)
    monkeypatch.setattr(recipes, "RECIPES_DIR", root)
    monkeypatch.setattr(recipes, "TEMPLATES_DIR", root / "templates")
    return root
