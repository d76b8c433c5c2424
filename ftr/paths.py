"""Where the repo's folders are: recipes, example data and the build tree every run writes into.

One rule for data paths: a path written in a recipe file is relative to the repo root (resolve); a path a user
types on the command line (`--set data.path=...`, `ftr lint PATH`) is relative to the current folder (typed).

FTR_ROOT moves the repo root, FTR_RECIPES the recipes tree (with its templates/ and accelerate/), FTR_BUILD build/.
"""

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("FTR_ROOT", Path(__file__).resolve().parents[1]))
RECIPES_DIR = Path(os.environ.get("FTR_RECIPES", REPO_ROOT / "recipes"))
TEMPLATES_DIR = RECIPES_DIR / "templates"
ACCELERATE_DIR = RECIPES_DIR / "accelerate"
BUILD_DIR = Path(os.environ.get("FTR_BUILD", REPO_ROOT / "build"))
TINY_MODELS_DIR = BUILD_DIR / "tiny-models"


def resolve(path: str | Path) -> Path:
    """A path as recipes write it: absolute as given, `build/...` inside the build tree (which FTR_BUILD may move),
    anything else relative to the repo root."""
    path = Path(path)
    if path.is_absolute():
        return path
    if path.parts[:1] == ("build",):
        return BUILD_DIR.joinpath(*path.parts[1:])
    return REPO_ROOT / path


def typed(path: str) -> str:
    """A path a user typed (a --set data.path, an argument): relative to the folder they typed it in, so made
    absolute here; paths written in recipe files stay relative to the repo root (resolve)."""
    return str(Path(path).expanduser().absolute()) if path else path


def run_dir(recipe_id: str) -> Path:
    """The build folder of `recipe_id`: its run folders (runs/), the `current` pointer, prepared/, eval/, merged/
    (ftr.runs has the layout; ftr.inference.Run resolves the current run)."""
    return BUILD_DIR / recipe_id
