"""Recipes: discover them, load one (with `extends:` inheritance and typed --set overrides), render its Axolotl YAML.

A recipe is a directory under recipes/ holding `recipe.yaml` (its variables) and a README. A per-model Jinja
template (recipes/templates/*.yaml.j2) places the variables into an Axolotl config; the template holds no logic.
load_recipe is the one way in, and refuses what would otherwise fail later or silently change nothing: a file that
is not a YAML mapping, an unknown key (with a did-you-mean), a variable the template never reads, a bar `ftr eval`
does not measure, a value out of range (ftr.validate's schema), whether it comes from a file or from --set.
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

from ftr import paths
from ftr.paths import REPO_ROOT, TINY_MODELS_DIR, resolve, run_dir
from ftr.validate import TEXT_KEYS, bar_problems, did_you_mean, recipe_file_problems, value_problem

RECIPES_DIR = paths.RECIPES_DIR
TEMPLATES_DIR = paths.TEMPLATES_DIR
RECIPE_FILE = "recipe.yaml"
MAX_DEPTH = 20  # lists and mappings in a recipe nest 3 deep; far deeper ones would overflow copy and validation
REQUIRED = ("description", "template", "data", "vars")
REQUIRED_DATA = ("path", "format", "system_prompt")
# Keys a --set may address besides `vars`: where the data comes from and how it is split.
DATA_KEYS = ("data.path", "data.format", "data.system_prompt", "data.seed", "data.too_long")
# Variables render() supplies itself: a recipe never sets them.
RENDER_SUPPLIED = frozenset({"recipe_id", "data_dir", "prepared_path", "output_dir"})


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
    def system_prompt(self) -> str:
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


def shown(path: Path) -> str:
    """A path as messages show it: repo-relative when inside the repo, else as given."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


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


class _RecipeLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping (PyYAML silently keeps the last one).

    The pure-Python loader, not libyaml's: deep nesting raises RecursionError here, where libyaml's composer
    overflows the C stack and kills the process."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if (key_node.tag, key_node.value) in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key_node.value!r}",
                                                            key_node.start_mark)
                seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep)


def _depth(value) -> int:
    """How deeply lists and mappings nest in value (iteratively: deep values must not overflow the stack)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, (list, dict)) and level <= MAX_DEPTH:
            deepest = max(deepest, level)
            todo += [(item, level + 1) for item in (value.values() if isinstance(value, dict) else value)]
        elif isinstance(value, (list, dict)):
            return level
    return deepest


def read_recipe_file(path: Path) -> dict:
    """One recipe.yaml, parsed and checked on its own (types, bounds, unknown keys); RecipeError names the file."""
    where = shown(path)
    try:
        raw = yaml.load(path.read_bytes().decode("utf-8"), Loader=_RecipeLoader)
    except OSError as exc:
        raise RecipeError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{where}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise RecipeError(f"{where}{at}: not valid YAML: {exc.problem or exc.context}{context}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: not valid YAML: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{where}: nested deeper than {MAX_DEPTH} levels; a recipe needs 3") from None
    if _depth(raw) > MAX_DEPTH:
        raise RecipeError(f"{where}: nested deeper than {MAX_DEPTH} levels; a recipe needs 3")
    if raw is None:
        raise RecipeError(f"{where}: empty; a recipe needs {', '.join(REQUIRED)} (or `extends:` another recipe)")
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: a recipe is a mapping of keys ({', '.join(REQUIRED)}, ...), "
                          f"got a {type(raw).__name__}")
    problems = recipe_file_problems(raw)
    if problems:
        raise RecipeError("\n".join(f"{where}: {problem}" for problem in problems))
    return raw


def _deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _chain(recipe_id: str, found: dict, twice: dict, seen: tuple = (), referrer: Path | None = None) -> list:
    """[(file, its own keys)] of recipe_id's `extends` chain, the root recipe first."""
    where = f"{shown(referrer)}: extends: " if referrer else ""
    if recipe_id in twice:
        raise RecipeError(where + twice[recipe_id])
    if recipe_id not in found:
        raise RecipeError(f"{where}unknown recipe {recipe_id!r}{did_you_mean(recipe_id, found)}; "
                          f"known: {', '.join(sorted(found)) or f'none under {RECIPES_DIR}'}")
    if recipe_id in seen:
        raise RecipeError(f"{where}cycle {' -> '.join(seen + (recipe_id,))}")
    path = found[recipe_id] / RECIPE_FILE
    raw = read_recipe_file(path)
    parent = raw.get("extends")
    above = _chain(parent, found, twice, seen + (recipe_id,), path) if parent else []
    return above + [(path, raw)]


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
    return names - RENDER_SUPPLIED


def _merged_problems(chain: list, raw: dict) -> list[str]:
    """What the merged recipe lacks, and what its files set that nothing reads (vars the template never uses, bars
    `ftr eval` does not measure): a setting that changes nothing is an error, not a silent no-op."""
    own = shown(chain[-1][0])
    after = " (in this file or the recipes it extends)" if len(chain) > 1 else ""
    problems = [f"{own}: missing key {key!r}{after}" for key in REQUIRED if key not in raw]
    problems += [f"{own}: data.{key}: missing{after}" for key in REQUIRED_DATA
                 if "data" in raw and key not in raw["data"]]
    if problems:
        return problems
    try:
        used = template_variables(raw["template"])
    except RecipeError as exc:
        source = next(shown(path) for path, keys in reversed(chain) if "template" in keys)
        return [f"{source}: {exc}"]
    for path, keys in chain:
        for name in keys.get("vars", {}):
            if name not in used:
                problems.append(f"{shown(path)}: vars.{name}: not read by template {raw['template']!r}, so it would "
                                f"change nothing{did_you_mean(name, used)}")
        problems += [f"{shown(path)}: {problem}" for problem in bar_problems(keys.get("bars", {}), raw["data"]["format"])]
    return problems


def load_recipe(recipe_id: str, sets: dict | None = None) -> Recipe:
    """Load recipe `recipe_id`, apply its `extends` chain, then the typed overrides in `sets`."""
    found, twice = scan()
    chain = _chain(recipe_id, found, twice)
    raw = {}
    for _, keys in chain:
        raw = _deep_merge(raw, {key: value for key, value in keys.items() if key != "extends"})
    problems = _merged_problems(chain, raw)
    if problems:
        raise RecipeError("\n".join(problems))
    recipe = Recipe(
        id=recipe_id,
        dir=found[recipe_id],
        description=raw["description"],
        template=raw["template"],
        data=raw["data"],
        vars=raw["vars"],
        bars=raw.get("bars", {}),
        tokenizer_stand_in=raw.get("tokenizer_stand_in"),
    )
    problems = [problem for key, value in (sets or {}).items() if (problem := _apply_set(recipe, key, value))]
    if problems:
        raise RecipeError("\n".join(f"recipe {recipe_id!r}: {problem}" for problem in problems))
    return recipe


def known_keys(recipe: Recipe) -> list[str]:
    return sorted(recipe.vars) + list(DATA_KEYS)


def _apply_set(recipe: Recipe, key: str, value) -> str | None:
    """Apply one override; the problem with it (unknown key, value out of range) as text, or None."""
    if key not in DATA_KEYS and key not in recipe.vars:
        return (f"unknown key {key!r}{did_you_mean(key, known_keys(recipe))}; "
                f"known keys: {', '.join(known_keys(recipe))}")
    problem = value_problem(key, value)
    if problem:
        return f"--set {key}: {problem}"
    if key in DATA_KEYS:
        recipe.data[key.split(".", 1)[1]] = value
        if key == "data.path":
            recipe.data.pop("generate", None)  # the recipe's generator writes its own file, never the user's
    else:
        recipe.vars[key] = value
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


def parse_sets(items: list[str]) -> dict:
    """Turn ["lora_r=32", "bf16=false", "base_model=Qwen/Qwen2.5-1.5B"] into typed values (scalars only); keys whose
    schema is text (base_model, data.system_prompt, ...) keep the text exactly as given."""
    sets = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecipeError(f"--set expects key=value, got {item!r}")
        sets[key] = text if (key if key.startswith("data.") else f"vars.{key}") in TEXT_KEYS else typed(text)
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
    recipe_inputs = json.dumps({"data": recipe.data, "vars": recipe.vars, "template": template_sources(recipe.template)},
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


class _OneLineDumper(yaml.SafeDumper):
    """safe_dump that double-quotes (with escapes) a string it would otherwise spread over several lines."""

    def choose_scalar_style(self):
        style = super().choose_scalar_style()
        return '"' if self.analysis.multiline else style


def _yaml_value(value) -> str:
    """A value as a one-line YAML scalar or flow collection: the only filter templates need."""
    text = yaml.dump(value, Dumper=_OneLineDumper, default_flow_style=True, allow_unicode=True, width=10**9)
    return text.removesuffix("\n").removesuffix("\n...")  # the document-end marker PyYAML adds after a plain scalar


def _environment():
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(loader=FileSystemLoader(TEMPLATES_DIR), undefined=StrictUndefined,
                               keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["y"] = _yaml_value
    return env


def _unsafe(char: str) -> bool:
    """True for what would end a YAML comment line early or what YAML refuses in a file: control characters,
    line and paragraph separators (U+0085, U+2028, U+2029), lone surrogates, U+FFFE/U+FFFF."""
    return not (" " <= char <= "~" or "\xa0" <= char <= "\ud7ff" or "\ue000" <= char <= "\ufffd"
                or char >= "\U00010000") or char in "\u2028\u2029"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "'": "\\'"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 argument, as Python decodes argv (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(text) -> str:
    """text with every character that could break a one-line YAML comment escaped (\\n, \\x1b, \\u2028, ...)."""
    return "".join(_escape(char) if _unsafe(char) else char for char in str(text))


def shell_quote(arg: str) -> str:
    """shlex.quote, or bash's $'...' for an argument holding control or line-separator characters: the command
    stays on one line and still runs as typed."""
    if not any(_unsafe(char) for char in arg):
        return shlex.quote(arg)
    return "$'" + "".join(_escape(char) if _unsafe(char) or char in "\\'" else char for char in arg) + "'"


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
    )
    try:
        body = _environment().get_template(recipe.template).render(**context)
    except UndefinedError as exc:
        raise RecipeError(f"recipe {recipe.id!r}, template {recipe.template}: undefined variable: {exc.message}") from None
    except TemplateError as exc:
        raise RecipeError(f"recipe {recipe.id!r}, template {recipe.template}: {exc}") from None
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
