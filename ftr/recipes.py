"""Recipes: discover them, load one (with `extends:` layers, its model family and typed --set overrides), render its
Axolotl YAML.

A recipe is a directory under recipes/ holding `recipe.yaml` and a README. It states only its choices: `extends:`
names the layers beneath it, applied in order (`_defaults`, another recipe, `profiles/cpu`), and `family:` names a
model family (recipes/families/<name>.yaml) that fixes the Jinja model template, the chat template, the end-of-turn
and pad tokens and whether roles must alternate. A per-family Jinja template (recipes/templates/*.yaml.j2) places
the variables into an Axolotl config; an `axolotl:` mapping passes any other Axolotl key through as written,
checked by Axolotl's own schema. load_recipe is the one way in, and refuses what would otherwise fail later or
silently change nothing: a file that is not a YAML mapping, an unknown key (with a did-you-mean), a variable the
template never reads, a bar `ftr eval` does not measure, a value out of range (ftr.validate's schema), a family
that does not match a local base model, a `task:` (ftr.tasks) that cannot train on its data.format, whether it
comes from a file or from --set.
"""

import copy
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ftr import families as model_families
from ftr import paths
from ftr.paths import REPO_ROOT, TINY_MODELS_DIR, resolve, run_dir
from ftr.quoting import one_line, shell_quote, yaml_quoted, yaml_value as _yaml_value
from ftr.recipe_files import MAX_DEPTH, REQUIRED, RecipeError, read_recipe_file, shown  # noqa: F401 (re-exported)
from ftr.tasks import DEFAULT as DEFAULT_TASK
from ftr.validate import NULLABLE_TEXT_KEYS, TEXT_KEYS, bar_problems, did_you_mean, task_problem, value_problem

RECIPES_DIR = paths.RECIPES_DIR
TEMPLATES_DIR = paths.TEMPLATES_DIR
RECIPE_FILE = "recipe.yaml"
REQUIRED_DATA = ("path", "format", "system_prompt")  # system_prompt may be null: rows keep what they have
# Keys a --set may address besides `vars`: where the data comes from and how it is split.
DATA_KEYS = ("data.path", "data.format", "data.system_prompt", "data.seed", "data.too_long", "data.encoding",
             "data.fields", "data.roles", "data.conflicts", "data.drop_invalid",
             "data.placeholders")
# Variables render() supplies itself: a recipe never sets them.
RENDER_SUPPLIED = frozenset({"recipe_id", "data_dir", "prepared_path", "output_dir", "axolotl_plugins"})
# Variables the recipe's family supplies (recipes/families/<name>.yaml): chosen by `family:`, never set one by one.
FAMILY_SUPPLIED = frozenset({"end_of_turn", "pad_token"})


@dataclass
class Recipe:
    id: str
    dir: Path
    description: str
    template: str
    data: dict
    vars: dict
    bars: dict = field(default_factory=dict)
    task: str = DEFAULT_TASK  # ftr.tasks: `task:` (rephrase | chat), what eval scores and serve offers
    tokenizer_stand_in: str | None = None
    family: str | None = None
    family_spec: dict = field(default_factory=dict)  # recipes/families/<family>.yaml
    axolotl: dict = field(default_factory=dict)  # Axolotl keys passed through as written
    sets: dict = field(default_factory=dict, compare=False)  # the overrides it was loaded with (for hints)

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
        try:
            argv = [sys.executable, *shlex.split(command), "-o", str(tmp)]
        except ValueError as exc:  # unbalanced quotes
            raise RecipeError(f"recipe {self.id!r}: data.generate {command!r}: {exc}") from None
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
    def system_prompt(self) -> str | None:
        """The system message of rows that have none; None (data.system_prompt: null) adds none."""
        return self.data["system_prompt"]

    @property
    def split(self) -> tuple[float, ...]:
        return tuple(self.data.get("split", (0.8, 0.1, 0.1)))

    @property
    def seed(self) -> int:
        return int(self.data.get("seed", 42))

    @property
    def too_long(self) -> str:
        """What conversion does with a row longer than sequence_len: drop (the default), truncate or error."""
        return self.data.get("too_long", "drop")

    @property
    def sequence_len(self) -> int:
        return int(self.vars["sequence_len"])

    @property
    def base_model(self) -> str:
        return str(self.vars["base_model"])

    @property
    def requires_alternating(self) -> bool:
        """The family's chat template raises on two user (or assistant) turns in a row (Mistral's do)."""
        return bool(self.family_spec.get("requires_alternating"))

    @property
    def supports_tools(self) -> bool:
        """The family's chat template renders tools, tool calls and tool results (Qwen2.5's does, Mistral v0.1's
        does not: such records are refused rather than trained without their calls)."""
        return bool(self.family_spec.get("supports_tools"))

    @property
    def end_of_turn(self) -> str | None:
        """The token that ends an assistant turn (trained; a stop token when generating)."""
        return self.family_spec.get("end_of_turn")

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


def scan(root: Path | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """Every recipe directory found recursively under root keyed by id (its name), and the ids defined twice
    (id -> message): a duplicate breaks only the recipes that use that id."""
    found, twice = {}, {}
    for file in sorted((root or RECIPES_DIR).rglob(RECIPE_FILE)):
        recipe_id = file.parent.name
        if recipe_id in found:
            twice[recipe_id] = f"{shown(file)}: recipe id {recipe_id!r} also defined in {shown(found[recipe_id])}"
        else:
            found[recipe_id] = file.parent
    return found, twice


def discover(root: Path | None = None) -> dict[str, Path]:
    """Every recipe directory found recursively under root, keyed by id (the directory name)."""
    found, twice = scan(root)
    if twice:
        raise RecipeError(next(iter(twice.values())))
    return found


def _deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _layers_known() -> list[str]:
    """The non-recipe layers `extends:` may name: _defaults-like files and profiles/<name>."""
    return sorted(str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in
                  [*RECIPES_DIR.glob("_*.yaml"), *RECIPES_DIR.glob("profiles/*.yaml")])


def _chain(name: str, found: dict, twice: dict, seen: tuple = (), referrer: Path | None = None) -> list:
    """[(file, its own keys)] of the layers under `name`, in the order they apply (each file once, where it first
    applies), `name` last. A name starting with `_` or holding `/` is a layer file (recipes/<name>.yaml: _defaults,
    profiles/cpu); any other name is a recipe id."""
    where = f"{shown(referrer)}: extends: " if referrer else ""
    if name in seen:
        raise RecipeError(f"{where}cycle {' -> '.join(seen + (name,))}")
    if name.startswith("families/"):
        raise RecipeError(f"{where}{name!r}: a model family is chosen by `family: {name.split('/', 1)[1]}`, "
                          "not by extends (so --set family=... can change it)")
    if name.startswith("_") or "/" in name:
        path = RECIPES_DIR / f"{name}.yaml"
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
            known = _layers_known()
            raise RecipeError(f"{where}unknown layer {name!r} (no {shown(path)}){did_you_mean(name, known)}; "
                              f"known: {', '.join(known) or 'none'}")
    else:
        if name in twice:
            raise RecipeError(where + twice[name])
        if name not in found:
            raise RecipeError(f"{where}unknown recipe {name!r}{did_you_mean(name, found)}; "
                              f"known: {', '.join(sorted(found)) or f'none under {RECIPES_DIR}'}")
        path = found[name] / RECIPE_FILE
    raw = read_recipe_file(path)
    parents = raw.get("extends") or []
    layers = []
    for parent in [parents] if isinstance(parents, str) else parents:
        for layer in _chain(parent, found, twice, seen + (name,), path):
            if all(layer[0] != known for known, _ in layers):
                layers.append(layer)
    return layers + [(path, raw)]


def _parsed_templates(name: str) -> dict:
    """Template `name` and every template it extends, includes or imports: {name: (source, parsed)}."""
    from jinja2 import TemplateNotFound, TemplateSyntaxError, meta

    env, found, todo = _environment(), {}, [name]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        try:
            source, filename, _ = env.loader.get_source(env, current)
            found[current] = source, env.parse(source, current, filename)
        except TemplateNotFound:  # before OSError, its base class
            known = sorted(p.name for p in TEMPLATES_DIR.glob("*.j2"))
            raise RecipeError(f"template {current!r} not found in {shown(TEMPLATES_DIR)}"
                              f"{did_you_mean(current, known)}; known: {', '.join(known)}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError(f"{shown(TEMPLATES_DIR / current)}: cannot read as UTF-8 text: {exc}") from None
        except TemplateSyntaxError as exc:
            raise RecipeError(f"{shown(TEMPLATES_DIR / current)}:{exc.lineno}: template syntax error: {exc.message}") from None
        references = list(meta.find_referenced_templates(found[current][1]))
        if None in references:
            raise RecipeError(f"{shown(TEMPLATES_DIR / current)}: extends or includes a computed name; "
                              "name templates literally so their variables can be checked")
        todo += references
    return found


def template_sources(name: str) -> dict[str, str]:
    """{name: source} of template `name` and every template it extends, includes or imports."""
    return {current: source for current, (source, _) in _parsed_templates(name).items()}


def template_variables(name: str) -> set[str]:
    """The recipe variables template `name` (with everything it extends or includes) reads."""
    from jinja2 import meta

    names = set().union(*(meta.find_undeclared_variables(ast) for _, ast in _parsed_templates(name).values()))
    return names - RENDER_SUPPLIED - FAMILY_SUPPLIED


def _missing(chain: list, raw: dict) -> list[str]:
    own = shown(chain[-1][0])
    after = " (in this file or the layers it extends)" if len(chain) > 1 else ""
    problems = [f"{own}: missing key {key!r}{after}" for key in REQUIRED if key not in raw]
    return problems + [f"{own}: data.{key}: missing{after}" for key in REQUIRED_DATA
                       if "data" in raw and key not in raw["data"]]


def _merged_problems(chain: list, raw: dict, template: str, template_from: str) -> list[str]:
    """What the merged recipe's files set that nothing reads (vars the template never uses, bars `ftr eval` does
    not measure) and a task that cannot train on data.format: a setting that changes nothing is an error, not a
    silent no-op."""
    task = raw.get("task", DEFAULT_TASK)
    if problem := task_problem(task, raw["data"]["format"]):
        return [f"{shown(chain[-1][0])}: {problem}"]
    try:
        used = template_variables(template)
    except RecipeError as exc:
        return [f"{template_from}: {exc}"]
    problems = []
    for path, keys in chain:
        for name in keys.get("vars", {}):
            if name not in used:
                problems.append(f"{shown(path)}: vars.{name}: not read by template {template!r}, so it would "
                                f"change nothing{did_you_mean(name, used)}")
        problems += [f"{shown(path)}: {problem}" for problem in bar_problems(keys.get("bars", {}), task)]
    return problems


def profile(name: str) -> dict:
    """The `vars` of recipes/profiles/<name>.yaml (`cpu`: what makes a recipe train on CPU), for code that adapts
    a recipe the way a recipe extending the profile would (tests, the bench's smoke mode)."""
    path = RECIPES_DIR / "profiles" / f"{name}.yaml"
    if not path.is_file():
        known = [p.stem for p in sorted((RECIPES_DIR / "profiles").glob("*.yaml"))]
        raise RecipeError(f"unknown profile {name!r}{did_you_mean(name, known)}; known: {', '.join(known) or 'none'}")
    return dict(read_recipe_file(path).get("vars", {}))


def families() -> dict[str, Path]:
    """Every model family: recipes/families/<name>.yaml by name."""
    return model_families.families(RECIPES_DIR)


def load_family(name: str) -> dict:
    return model_families.load_family(name, RECIPES_DIR)


def family_of(base_model: str) -> str | None:
    return model_families.family_of(base_model, RECIPES_DIR)


def load_recipe(recipe_id: str, sets: dict | None = None) -> Recipe:
    """Load recipe `recipe_id`: its `extends` layers in order, the typed overrides in `sets`, then its family."""
    found, twice = scan()
    chain = _chain(recipe_id, found, twice)
    raw = {}
    for _, keys in chain:
        raw = _deep_merge(raw, {key: value for key, value in keys.items() if key != "extends"})
    problems = _missing(chain, raw)
    if problems:
        raise RecipeError("\n".join(problems))
    sets = dict(sets or {})
    problems = [problem for key, value in sets.items() if (problem := _apply_set(raw, key, value))]
    if problems:
        raise RecipeError("\n".join(f"recipe {recipe_id!r}: {problem}" for problem in problems))
    family, spec = model_families.choose(chain, raw, sets, RECIPES_DIR)
    if "template" in raw:
        template = raw["template"]
        template_from = next(shown(path) for path, keys in reversed(chain) if "template" in keys)
    else:
        template, template_from = spec["template"], shown(families()[family])
    problems = _merged_problems(chain, raw, template, template_from)
    if problems:
        raise RecipeError("\n".join(problems))
    recipe_vars = {"chat_template": spec["chat_template"], **raw["vars"]}
    clash = model_families.chat_template_clash(family, recipe_vars["chat_template"], RECIPES_DIR)
    if clash:
        raise RecipeError(f"recipe {recipe_id!r}: chat_template {recipe_vars['chat_template']!r} is family "
                          f"{clash!r}'s, but the family is {family!r} (its template, tokens and turn rules would "
                          f"not match): set family={clash}")
    return Recipe(
        id=recipe_id,
        dir=found[recipe_id],
        description=raw["description"],
        template=template,
        data=raw["data"],
        vars=recipe_vars,
        bars=raw.get("bars", {}),
        task=raw.get("task", DEFAULT_TASK),
        tokenizer_stand_in=raw.get("tokenizer_stand_in", spec.get("tokenizer_stand_in")),
        family=family,
        family_spec=spec,
        axolotl=raw.get("axolotl", {}),
        sets=sets,
    )


def known_keys(raw: dict) -> list[str]:
    return sorted({*raw.get("vars", {}), "chat_template"}) + list(DATA_KEYS) + ["task", "family", "axolotl.<KEY>"]


def _apply_set(raw: dict, key: str, value) -> str | None:
    """Apply one override to the merged recipe; the problem with it (unknown key, value out of range) as text,
    or None. axolotl.KEY adds any Axolotl key: Axolotl's schema checks it when the recipe renders."""
    known = key in DATA_KEYS or key in raw["vars"] or key in ("chat_template", "task", "family") or \
        key.startswith("axolotl.")
    if not known:
        keys = known_keys(raw)
        return f"unknown key {key!r}{did_you_mean(key, keys)}; known keys: {', '.join(keys)}"
    problem = value_problem(key, value)
    if problem:
        return f"--set {key}: {problem}"
    if key in DATA_KEYS:
        raw["data"][key.split(".", 1)[1]] = value
        if key == "data.path":
            raw["data"].pop("generate", None)  # the recipe's generator writes its own file, never the user's
    elif key in ("task", "family"):
        raw[key] = value
    elif key.startswith("axolotl."):
        raw.setdefault("axolotl", {})[key.split(".", 1)[1]] = value
    else:
        raw["vars"][key] = value
    return None


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


# --set keys whose value is a mapping, written as a YAML flow mapping: data.fields={messages: dialog, role: from}
MAPPING_KEYS = ("data.fields", "data.roles", "data.placeholders")


def _mapping(key: str, text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise RecipeError(f"--set {key} expects a mapping such as {key}={{a: b, c: d}}, got {text!r}")
    return value


def parse_sets(items: list[str]) -> dict:
    """Turn ["lora_r=32", "bf16=false", "base_model=Qwen/Qwen2.5-1.5B"] into typed values (scalars, and YAML flow
    mappings for MAPPING_KEYS); keys whose schema is text (base_model, data.system_prompt, ...) keep the text
    exactly as given."""
    sets = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecipeError(f"--set expects key=value, got {item!r}")
        section_key = key if key.startswith("data.") else f"vars.{key}"
        text_key = key in ("task", "family") or section_key in TEXT_KEYS
        if section_key in NULLABLE_TEXT_KEYS and text.strip() == "null":
            sets[key] = None
        elif key in MAPPING_KEYS:
            sets[key] = _mapping(key, text)
        else:
            sets[key] = text if text_key else typed(text)
    return sets


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*=")


def split_sets(text: str) -> list[str]:
    """`make ... SET='lora_r=32 data.system_prompt=Be brief please'` -> ["lora_r=32", "data.system_prompt=Be brief
    please"]: words split as a shell would (quotes keep a word whole), and a word that does not start with `key=`
    continues the value before it after one space."""
    try:
        words = shlex.split(text)
    except ValueError as exc:  # "No closing quotation"
        raise RecipeError(f"--sets {text!r}: {exc}") from None
    items = []
    for word in words:
        if _KEY.match(word):
            items.append(word)
        elif items:
            items[-1] += " " + word
        else:
            raise RecipeError(f"--sets expects key=value words, got {word!r} first")
    return items


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
    """sha256 of everything a prepared dataset depends on: data content, recipe inputs, tokenizer, templates."""
    recipe_inputs = json.dumps({"data": recipe.data, "vars": recipe.vars, "template": template_sources(recipe.template),
                                "family": recipe.family_spec, "axolotl": recipe.axolotl},
                               sort_keys=True, ensure_ascii=False, default=str)
    data_path = recipe.ensure_data()
    return {
        "data": sha256_file(data_path) if data_path.exists() else "missing",
        "recipe": hashlib.sha256(recipe_inputs.encode("utf-8", "surrogatepass")).hexdigest(),
        "tokenizer": _tokenizer_fingerprint(recipe),
    }


def prepared_key(hashes: dict) -> str:
    """Short key for the prepared-dataset folder: editing data, tokenizer or template changes it."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


def _environment():
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(loader=FileSystemLoader(TEMPLATES_DIR), undefined=StrictUndefined,
                               keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["y"] = _yaml_value
    env.filters["q"] = yaml_quoted
    return env


def _passthrough(recipe: Recipe, body: str) -> str:
    """The recipe's `axolotl:` keys as YAML lines, each value one line (the `y` filter); a key the template already
    places, or one Axolotl's schema does not know (it would drop it unread), is refused."""
    try:
        placed = yaml.safe_load(body) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {recipe.id!r}, template {recipe.template}: renders invalid YAML: {exc}") from None
    passed = {key: value for key, value in recipe.axolotl.items() if key != "plugins"}  # the template lists those
    problems = [f"axolotl.{key}: the template already places {key!r}; set it as a recipe variable instead"
                f"{' (vars.' + key + ')' if key in recipe.vars else ''}" for key in passed if key in placed]
    if not problems:
        from ftr.validate import unknown_axolotl_keys

        try:
            problems = [f"axolotl.{problem}" for problem in
                        unknown_axolotl_keys({**placed, **passed}, keys=list(passed))]
        except ValueError as exc:  # a plugin that does not import
            problems = [f"axolotl: {exc}"]
    if problems:
        raise RecipeError("\n".join(f"recipe {recipe.id!r}: {problem}" for problem in problems))
    if not passed:
        return ""
    lines = [f"{key}: {_yaml_value(value)}" for key, value in passed.items()]
    return "\n# --- axolotl: passed through from the recipe's axolotl: keys ---\n" + "\n".join(lines) + "\n"


def render(recipe: Recipe, command: str | None = None) -> str:
    """The Axolotl YAML for `recipe`, headed by the command that produced it and its inputs' sha256."""
    from jinja2 import TemplateError, UndefinedError

    hashes = input_hashes(recipe)
    out = run_dir(recipe.id)
    context = dict(recipe.vars)
    local_model = resolve(recipe.base_model)
    if local_model.exists():
        context["base_model"] = str(local_model)
    context.update(  # the names in RENDER_SUPPLIED
        recipe_id=recipe.id,
        data_dir=str(out / "data"),
        prepared_path=str(out / "prepared" / prepared_key(hashes)),
        output_dir=str(out / "adapter"),
        axolotl_plugins=list(recipe.axolotl.get("plugins") or []),  # after the template's own plugins
    )
    context.update({name: recipe.family_spec[name] for name in FAMILY_SUPPLIED if name in recipe.family_spec})
    try:
        body = _environment().get_template(recipe.template).render(**context)
    except UndefinedError as exc:
        raise RecipeError(f"recipe {recipe.id!r}, template {recipe.template}: undefined variable: {exc.message}") from None
    except TemplateError as exc:
        raise RecipeError(f"recipe {recipe.id!r}, template {recipe.template}: {exc}") from None
    if recipe.axolotl:
        body += _passthrough(recipe, body)
    # Every value below is escaped onto its line: a newline in a --set value must not start a YAML key.
    header = [
        f"# Generated by: {one_line(command or f'ftr render {shell_quote(recipe.id)}')}",
        f"# recipe: {one_line(recipe.id)} ({one_line(shown(recipe.dir))}), template: {one_line(recipe.template)}",
        f"# sha256 data: {hashes['data']}  ({one_line(recipe.data['path'])})",
        f"# sha256 recipe inputs: {hashes['recipe']}",
        f"# sha256 tokenizer: {hashes['tokenizer']}",
        "",
    ]
    return "\n".join(header) + body


def invocation() -> str:
    """The command line as the user typed it, quoted for a shell and kept on one line, for headers and manifests."""
    program = Path(sys.argv[0]).name
    argv = ["ftr" if program.endswith(".py") else program] + sys.argv[1:]  # `python -m ftr.cli` runs cli.py
    return " ".join(shell_quote(arg) for arg in argv)
