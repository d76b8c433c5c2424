"""Recipes: discover them, load one (with `extends:` inheritance and typed --set overrides), render its Axolotl YAML.

A recipe is a directory under recipes/ holding `recipe.yaml` (its variables) and a README. A per-model Jinja
template (recipes/templates/*.yaml.j2) places the variables into an Axolotl config; the template holds no logic.
"""

import copy
import hashlib
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ftr.paths import REPO_ROOT, RECIPES_DIR, TEMPLATES_DIR, TINY_MODELS_DIR, resolve, run_dir

RECIPE_FILE = "recipe.yaml"
# Keys a --set may address besides `vars`: where the data comes from and how it is split.
DATA_KEYS = ("data.path", "data.format", "data.system_prompt", "data.seed")


class RecipeError(ValueError):
    """A recipe that cannot be found, parsed, overridden or rendered; the message says which and why."""


@dataclass
class Recipe:
    id: str
    dir: Path
    description: str
    template: str
    data: dict
    vars: dict
    bars: dict = field(default_factory=dict)
    tokenizer_stand_in: str | None = None

    @property
    def data_path(self) -> Path:
        return resolve(self.data["path"])

    def ensure_data(self) -> Path:
        """The raw data file; a recipe whose `data.generate` names a generator script gets it written on first use.

        Generators are deterministic (fixed seed), so generated data is as reproducible as shipped data without
        megabytes of it in git. The file appears whole or not at all.
        """
        path = self.data_path
        command = self.data.get("generate")
        if path.exists() or not command:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        argv = [sys.executable, *shlex.split(command), "-o", str(tmp)]
        proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RecipeError(f"recipe {self.id!r}: `{shlex.join(argv)}` exited {proc.returncode}: {proc.stderr[-2000:]}")
        tmp.rename(path)
        return path

    @property
    def data_format(self) -> str:
        return self.data["format"]

    @property
    def system_prompt(self) -> str:
        return self.data["system_prompt"]

    @property
    def split(self) -> tuple[float, ...]:
        return tuple(self.data.get("split", (0.8, 0.1, 0.1)))

    @property
    def seed(self) -> int:
        return int(self.data.get("seed", 42))

    @property
    def sequence_len(self) -> int:
        return int(self.vars["sequence_len"])

    @property
    def base_model(self) -> str:
        return str(self.vars["base_model"])

    @property
    def requires_alternating(self) -> bool:
        # Mistral's chat templates raise on two user (or assistant) turns in a row.
        return str(self.vars.get("chat_template", "")).startswith("mistral")

    @property
    def tokenizer_path(self) -> str:
        """The tokenizer to measure and mask with: the base model's if it is a local folder, else the tiny
        stand-in that carries the same real tokenizer (no hub here)."""
        base = resolve(self.base_model)
        if base.exists() or not self.tokenizer_stand_in:
            return str(base) if base.exists() else self.base_model
        return str(TINY_MODELS_DIR / self.tokenizer_stand_in)

    def load_tokenizer(self):
        """The recipe's tokenizer with the chat template training uses (offline)."""
        from transformers import AutoTokenizer

        if self.tokenizer_stand_in and not resolve(self.base_model).exists():
            from ftr.tiny_models import build

            build(self.tokenizer_stand_in, TINY_MODELS_DIR)
        tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        template = self.vars.get("chat_template")
        if template and template != "tokenizer_default":
            from axolotl.utils.chat_templates import get_chat_template

            tokenizer.chat_template = get_chat_template(template)
        return tokenizer


def discover(root: Path = RECIPES_DIR) -> dict[str, Path]:
    """Every recipe directory found recursively under root, keyed by id (the directory name)."""
    found = {}
    for file in sorted(root.rglob(RECIPE_FILE)):
        recipe_id = file.parent.name
        if recipe_id in found:
            raise RecipeError(f"{file}: recipe id {recipe_id!r} also defined in {found[recipe_id]}")
        found[recipe_id] = file.parent
    return found


def _deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _raw(recipe_id: str, known: dict[str, Path], seen: tuple = ()) -> dict:
    if recipe_id not in known:
        raise RecipeError(f"unknown recipe {recipe_id!r}; known: {', '.join(sorted(known))}")
    if recipe_id in seen:
        raise RecipeError(f"recipe {recipe_id!r}: `extends` cycle {' -> '.join(seen + (recipe_id,))}")
    path = known[recipe_id] / RECIPE_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    parent = raw.pop("extends", None)
    if parent:
        raw = _deep_merge(_raw(parent, known, seen + (recipe_id,)), raw)
    return raw


def load_recipe(recipe_id: str, sets: dict | None = None) -> Recipe:
    """Load recipe `recipe_id`, apply its `extends` chain, then the typed overrides in `sets`."""
    known = discover()
    raw = _raw(recipe_id, known)
    missing = [k for k in ("description", "template", "data", "vars") if k not in raw]
    if missing:
        raise RecipeError(f"{known[recipe_id] / RECIPE_FILE}: missing key(s): {', '.join(missing)}")
    recipe = Recipe(
        id=recipe_id,
        dir=known[recipe_id],
        description=raw["description"],
        template=raw["template"],
        data=raw["data"],
        vars=raw["vars"],
        bars=raw.get("bars", {}),
        tokenizer_stand_in=raw.get("tokenizer_stand_in"),
    )
    for key, value in (sets or {}).items():
        _apply_set(recipe, key, value)
    return recipe


def known_keys(recipe: Recipe) -> list[str]:
    return sorted(recipe.vars) + list(DATA_KEYS)


def _apply_set(recipe: Recipe, key: str, value) -> None:
    if key in DATA_KEYS:
        recipe.data[key.split(".", 1)[1]] = value
        if key == "data.path":
            recipe.data.pop("generate", None)  # the recipe's generator writes its own file, never the user's
    elif key in recipe.vars:
        recipe.vars[key] = value
    else:
        raise RecipeError(f"unknown key {key!r} for recipe {recipe.id!r}; known keys: {', '.join(known_keys(recipe))}")


def typed(text: str):
    """'32' -> 32, '1e-4' -> 0.0001, 'false' -> False, 'null' -> None, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_sets(items: list[str]) -> dict:
    """Turn ["lora_r=32", "bf16=false", "base_model=Qwen/Qwen2.5-1.5B"] into typed values (scalars only)."""
    sets = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set expects key=value, got {item!r}")
        sets[key.strip()] = typed(text)
    return sets


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tokenizer_fingerprint(recipe: Recipe) -> str:
    """Hash of the tokenizer files when they are local, else of the model id (a hub tokenizer is immutable per id)."""
    folder = Path(recipe.tokenizer_path)
    digest = hashlib.sha256(recipe.base_model.encode())
    if folder.is_dir():
        for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).exists():
                digest.update(name.encode() + bytes.fromhex(sha256_file(folder / name)))
    return digest.hexdigest()


def input_hashes(recipe: Recipe) -> dict:
    """sha256 of everything a prepared dataset depends on: data content, recipe inputs, tokenizer, template."""
    template_text = (TEMPLATES_DIR / recipe.template).read_text(encoding="utf-8")
    recipe_inputs = json.dumps({"data": recipe.data, "vars": recipe.vars, "template": template_text},
                               sort_keys=True, ensure_ascii=False, default=str)
    data_path = recipe.ensure_data()
    return {
        "data": sha256_file(data_path) if data_path.exists() else "missing",
        "recipe": hashlib.sha256(recipe_inputs.encode()).hexdigest(),
        "tokenizer": _tokenizer_fingerprint(recipe),
    }


def prepared_key(hashes: dict) -> str:
    """Short key for the prepared-dataset folder: editing data, tokenizer or template changes it."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


def _yaml_value(value) -> str:
    """A value as a one-line YAML scalar or flow collection: the only filter templates need."""
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip().removesuffix("\n...").removesuffix("...").strip()


def _environment():
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(loader=FileSystemLoader(TEMPLATES_DIR), undefined=StrictUndefined,
                               keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["y"] = _yaml_value
    return env


def render(recipe: Recipe, command: str | None = None) -> str:
    """The Axolotl YAML for `recipe`, headed by the command that produced it and its inputs' sha256."""
    from jinja2 import TemplateError, UndefinedError

    hashes = input_hashes(recipe)
    out = run_dir(recipe.id)
    context = dict(recipe.vars)
    local_model = resolve(recipe.base_model)
    if local_model.exists():
        context["base_model"] = str(local_model)
    context.update(
        recipe_id=recipe.id,
        data_dir=str(out / "data"),
        prepared_path=str(out / "prepared" / prepared_key(hashes)),
        output_dir=str(out / "adapter"),
    )
    try:
        body = _environment().get_template(recipe.template).render(**context)
    except UndefinedError as exc:
        raise RecipeError(f"recipe {recipe.id!r}, template {recipe.template}: undefined variable: {exc.message}") from None
    except TemplateError as exc:
        raise RecipeError(f"recipe {recipe.id!r}, template {recipe.template}: {exc}") from None
    command = command or " ".join(["ftr", "render", recipe.id])
    header = [
        f"# Generated by: {command}",
        f"# recipe: {recipe.id} ({recipe.dir.relative_to(REPO_ROOT) if recipe.dir.is_relative_to(REPO_ROOT) else recipe.dir}), template: {recipe.template}",
        f"# sha256 data: {hashes['data']}  ({recipe.data['path']})",
        f"# sha256 recipe inputs: {hashes['recipe']}",
        f"# sha256 tokenizer: {hashes['tokenizer']}",
        "",
    ]
    return "\n".join(header) + body


def invocation() -> str:
    """The command line as the user typed it, for headers and manifests."""
    argv = [Path(sys.argv[0]).name] + sys.argv[1:]
    return shlex.join(argv)
