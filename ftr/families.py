"""Model families as data: recipes/families/<name>.yaml fixes what a base model's family decides (the Jinja model
template, Axolotl's chat_template, the end-of-turn and pad tokens, whether roles must alternate), so a recipe names
its family instead of restating them. choose() picks a recipe's family and refuses one that contradicts a local
base model's config.json."""

import json
from pathlib import Path

from ftr.paths import resolve
from ftr.recipe_files import RecipeError, read_family_file, shown
from ftr.validate import did_you_mean

FAMILIES = "families"


def families(root: Path) -> dict[str, Path]:
    """Every model family: <root>/families/<name>.yaml by name."""
    return {path.stem: path for path in sorted((root / FAMILIES).glob("*.yaml"))}


def load_family(name: str, root: Path) -> dict:
    known = families(root)
    if name not in known:
        raise RecipeError(f"unknown family {name!r}{did_you_mean(name, known)}; known: {', '.join(known) or 'none'} "
                          f"(recipes/{FAMILIES}/<name>.yaml)")
    return read_family_file(known[name])


def local_model_type(base_model: str) -> str | None:
    """config.json's model_type of a base model that is a local folder; None for a hub id (or a folder without one)."""
    config = resolve(base_model) / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return model_type if isinstance(model_type, str) else None


def family_of(base_model: str, root: Path) -> str | None:
    """The family a base model belongs to: by its local config.json's model_type, else by a family's hub name
    (`qwen2.5`, `mistral`) in the hub id; None when neither tells."""
    model_type = local_model_type(base_model)
    specs = {name: load_family(name, root) for name in families(root)}
    if model_type:
        return next((name for name, spec in specs.items() if model_type in spec["model_types"]), None)
    lowered = base_model.lower()
    named = [name for name, spec in specs.items() if any(part.lower() in lowered for part in spec["hub_names"])]
    return named[0] if len(named) == 1 else None


def choose(chain: list, raw: dict, sets: dict, root: Path) -> tuple[str, dict]:
    """The recipe's family and its spec: --set family, else the family a --set base_model names, else the
    recipe's `family:`, else the base model's. A local base model of another family is an error."""
    base_model = str(raw.get("vars", {}).get("base_model", ""))
    if "family" in sets:
        name, source = sets["family"], "--set family"
    elif "base_model" in sets and (derived := family_of(base_model, root)):
        name, source = derived, f"--set base_model {base_model!r}"
    elif "family" in raw:
        name = raw["family"]
        source = next(shown(path) for path, keys in reversed(chain) if "family" in keys) + ": family"
    elif base_model and (derived := family_of(base_model, root)):
        name, source = derived, f"base model {base_model!r}"
    else:
        raise RecipeError(f"{shown(chain[-1][0])}: missing key 'family' (in this file or the layers it extends), and "
                          f"base model {base_model!r} does not tell it; known: {', '.join(families(root)) or 'none'}")
    try:
        spec = load_family(name, root)
    except RecipeError as exc:
        raise RecipeError(f"{source}: {exc}") from None
    model_type = local_model_type(base_model) if base_model else None
    if model_type and model_type not in spec["model_types"]:
        right = family_of(base_model, root)
        fix = f"set family={right}" if right else f"which no family in recipes/{FAMILIES}/ covers"
        raise RecipeError(f"{source}: family {name!r} is for model_type {', '.join(spec['model_types'])}, but base "
                          f"model {base_model} is {model_type!r} (its config.json); {fix}")
    return name, spec


def chat_template_clash(name: str, chat_template: str, root: Path) -> str | None:
    """The other family whose chat_template this is, when it is not family `name`'s own: its template, tokens and
    turn rules would not match the family's."""
    own = load_family(name, root)["chat_template"]
    return next((other for other in families(root) if other != name
                 and load_family(other, root)["chat_template"] == chat_template != own), None)
