"""Reading one recipe-tree YAML file (a recipe.yaml, _defaults.yaml, a profile or a family) and checking it on its
own: UTF-8, valid YAML without duplicate keys, not absurdly deep, a mapping, and (for recipe layers) keys and values
the recipe schema accepts. RecipeError names the file, with line and column where YAML gives them."""

from pathlib import Path

import yaml

from ftr.paths import REPO_ROOT
from ftr.validate import FamilySchema, RecipeFileSchema, file_problems

MAX_DEPTH = 20  # lists and mappings in a recipe nest 3 deep; far deeper ones would overflow copy and validation
REQUIRED = ("description", "data", "vars")


class RecipeError(ValueError):
    """A recipe that cannot be found, parsed, overridden or rendered; the message says which and why."""


def shown(path: Path) -> str:
    """A path as messages show it: repo-relative when inside the repo, else as given."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


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


def depth(value) -> int:
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


def read_yaml_mapping(path: Path, what: str = "a recipe") -> dict:
    """One YAML file parsed as a mapping; RecipeError names the file (and line) for anything else."""
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
    if depth(raw) > MAX_DEPTH:
        raise RecipeError(f"{where}: nested deeper than {MAX_DEPTH} levels; a recipe needs 3")
    if raw is None:
        raise RecipeError(f"{where}: empty; {what} needs {', '.join(REQUIRED)} (or `extends:` another recipe)")
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: {what} is a mapping of keys ({', '.join(REQUIRED)}, ...), "
                          f"got a {type(raw).__name__}")
    return raw


def _read_checked(path: Path, schema, *what) -> dict:
    """A YAML mapping checked on its own against `schema`; every problem named with the file."""
    raw = read_yaml_mapping(path, *what)
    problems = file_problems(raw, schema)
    if problems:
        raise RecipeError("\n".join(f"{shown(path)}: {problem}" for problem in problems))
    return raw


def read_recipe_file(path: Path) -> dict:
    """One recipe.yaml (or _defaults.yaml, a profile), parsed and checked on its own (types, bounds, unknown keys)."""
    return _read_checked(path, RecipeFileSchema)


def read_family_file(path: Path) -> dict:
    """One recipes/families/<name>.yaml, parsed and checked against the family schema."""
    return _read_checked(path, FamilySchema, "a model family")
