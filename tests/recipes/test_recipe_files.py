"""Malformed recipe files end in one clear line naming the file and the problem, never a traceback, and one broken
recipe does not stop `ftr list` from listing the others. The CLI runs on a temporary recipes tree: in-process with
ftr.recipes pointed at it, and once as a real process through FTR_RECIPES."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftr import paths, recipes
from ftr.recipes import RecipeError, discover, load_recipe

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD = yaml.safe_load((paths.RECIPES_DIR / "qwen-rephrase" / "recipe.yaml").read_text(encoding="utf-8"))


def good(**changes) -> dict:
    """qwen-rephrase's keys (no extends) with changes; a value of None removes the key, data/vars merge."""
    raw = {**GOOD, "data": dict(GOOD["data"]), "vars": dict(GOOD["vars"])}
    for key, value in changes.items():
        if key in ("data", "vars") and isinstance(value, dict):
            raw[key].update(value)
        elif value is None:
            raw.pop(key)
        else:
            raw[key] = value
    return raw


def text(raw) -> str:
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)


GOOD_TEXT = text(GOOD)
data_without_path = good()
del data_without_path["data"]["path"]

# case id -> (recipe.yaml content, or a dict of extra recipe dirs; the recipe id whose file the error names; reason)
CASES = {
    "top-level-list": ("- description: a\n- template: qwen.yaml.j2\n", None, "a recipe is a mapping of keys"),
    "top-level-scalar": ("just some text\n", None, "got a str"),
    "empty-file": ("", None, "empty"),
    "comments-only": ("# nothing here\n", None, "empty"),
    "vars-as-list": (text(good(vars=None) | {"vars": ["lora_r", 8]}), None, "vars: must be a mapping"),
    "data-without-path": (text(data_without_path), None, "data.path: missing"),
    "extends-missing": ("extends: no-such-recipe\n", None, "extends: unknown recipe 'no-such-recipe'"),
    "extends-not-a-string": ("extends: 3\n", None, "extends: must be a string or a list of strings"),
    "extends-unknown-layer": ("extends: [_defaults, profiles/gpu]\n", None, "unknown layer 'profiles/gpu'"),
    "extends-outside-the-tree": ("extends: [/etc/passwd]\n", None, "unknown layer '/etc/passwd'"),
    "extends-a-family": ("extends: [_defaults, families/mistral]\n", None, "chosen by `family: mistral`"),
    "unknown-family": (text(good(family="qwen25")), None, "unknown family 'qwen25' (did you mean 'qwen2_5'?)"),
    "axolotl-bad-key": (text(good(axolotl={"a b": 1})), None, "axolotl: key 'a b': an Axolotl key is a name"),
    "extends-cycle": ("extends: cycle-partner\n", "cycle-partner", "extends: cycle"),
    "not-utf8": (b"description: caf\xe9\n" + GOOD_TEXT.encode(), None, "not UTF-8 text (byte 0xe9"),
    "tab-indented": (GOOD_TEXT.replace("\n  lora_kernels:", "\n\tlora_kernels:"), None, "not valid YAML"),
    "unclosed-bracket": ("vars: [1, 2\n", None, "not valid YAML"),
    "two-documents": (GOOD_TEXT + "---\n" + GOOD_TEXT, None, "not valid YAML"),
    "python-tag": ("description: !!python/object:os.system [ls]\n", None, "not valid YAML"),
    "duplicate-key": (GOOD_TEXT + "description: again\n", None, "duplicate key 'description'"),
    "duplicate-var": (GOOD_TEXT.replace("  lora_kernels: true\n", "  lora_kernels: true\n  lora_kernels: false\n"), None,
                      "duplicate key 'lora_kernels'"),
    "missing-template": (text(good(template="nope.yaml.j2")), None, "template 'nope.yaml.j2' not found"),
    "template-not-a-string": (text(good(template=3)), None, "template: must be a string"),
    "missing-description": (text(good(description=None)), None, "missing key 'description'"),
    "description-not-text": (text(good(description=["a"])), None, "description: must be a string"),
    "unknown-top-key": (text(good(lora_r=8)), None, "lora_r: unknown key"),
    "unknown-var": (text(good(vars={"lora_rr": 8})), None, "vars.lora_rr: not read by template"),
    "unknown-data-key": (text(good(data={"spilt": [0.8, 0.1, 0.1]})), None, "did you mean 'split'"),
    "unknown-bar": (text(good(bars={"json_valid": 0.9})), None, "did you mean 'json_valid_rate'"),
    "bar-not-a-number": (text(good(bars={"json_valid_rate": "high"})), None, "bars.json_valid_rate: must be a number"),
    "non-string-var-key": (GOOD_TEXT.replace("  lora_kernels: true\n", "  lora_kernels: true\n  7: 8\n"), None, "key 7: must be a string"),
    "bad-value": (text(good(vars={"lora_r": -5})), None, "vars.lora_r: must be > 0, got -5"),
    "bad-split": (text(good(data={"split": [0.5, 0.5, 0.5]})), None, "data.split: split must be three"),
    "bad-format": (text(good(data={"format": "evil"})), None, "data.format: must be one of"),
    "bad-stand-in": (text(good(tokenizer_stand_in="llama")), None, "tokenizer_stand_in: must be one of"),
    "recipe-file-is-a-dir": ({}, None, "cannot read"),
    "nested-too-deep": ("vars:\n  x: " + "[" * 25 + "]" * 25 + "\n", None, "nested deeper than 20 levels"),
    "nested-100000-deep": ("vars:\n  x: " + "[" * 100000 + "]" * 100000 + "\n", None, "nested deeper than 20"),
}


def make_root(root: Path) -> Path:
    """A recipes tree: the real templates, defaults, profiles and families, one good recipe, and a recipe directory
    per case."""
    shutil.copytree(paths.TEMPLATES_DIR, root / "templates")
    for layer in ("families", "profiles"):
        shutil.copytree(paths.RECIPES_DIR / layer, root / layer)
    shutil.copy(paths.RECIPES_DIR / "_defaults.yaml", root / "_defaults.yaml")
    (root / "good-recipe").mkdir(parents=True)
    (root / "good-recipe" / "recipe.yaml").write_text(GOOD_TEXT, encoding="utf-8")
    (root / "qwen-rephrase").mkdir()
    (root / "qwen-rephrase" / "recipe.yaml").write_text(GOOD_TEXT, encoding="utf-8")
    for case, (content, _, _) in CASES.items():
        folder = root / case
        folder.mkdir()
        if isinstance(content, dict):
            (folder / "recipe.yaml").mkdir()
        else:
            (folder / "recipe.yaml").write_bytes(content.encode() if isinstance(content, str) else content)
    (root / "cycle-partner").mkdir()
    (root / "cycle-partner" / "recipe.yaml").write_text("extends: extends-cycle\n", encoding="utf-8")
    (root / "nested" / "good-recipe").mkdir(parents=True)  # the same id twice
    (root / "nested" / "good-recipe" / "recipe.yaml").write_text(GOOD_TEXT, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_root(tmp_path_factory.mktemp("recipes-tree") / "recipes")


def ftr(args, root, build) -> subprocess.CompletedProcess:
    env = dict(os.environ, FTR_RECIPES=str(root), FTR_BUILD=str(build))
    return subprocess.run([sys.executable, "-m", "ftr.cli", *args], cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=120)


@pytest.fixture
def on_tree(root, cli, monkeypatch):
    """In-process `ftr` on the temporary tree (FTR_RECIPES is read once, at import: a real run sets it instead)."""
    monkeypatch.setattr(recipes, "RECIPES_DIR", root)
    monkeypatch.setattr(recipes, "TEMPLATES_DIR", root / "templates")
    return cli


@pytest.mark.parametrize("case", CASES)
def test_malformed_recipe_is_one_clear_error(case, root, on_tree):
    _, named, reason = CASES[case]
    proc = on_tree(["render", case])  # a traceback would raise here
    assert proc.exit_code == 1, proc.stdout + proc.stderr
    assert str(root / (named or case) / "recipe.yaml") in proc.stderr, proc.stderr
    assert reason in proc.stderr, proc.stderr


def test_list_reports_broken_recipes_on_stderr_and_lists_the_rest(root, tmp_path):
    proc = ftr(["list"], root, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert listed == ["qwen-rephrase"], proc.stdout  # good-recipe is defined twice, every case is broken
    for case, (_, named, reason) in CASES.items():
        assert reason in proc.stderr, case
        assert str(root / (named or case) / "recipe.yaml") in proc.stderr, case
    assert proc.stderr.count("recipe id 'good-recipe' also defined in") == 1


def test_a_duplicate_id_breaks_only_that_id(on_tree):
    proc = on_tree(["render", "good-recipe"])
    assert proc.exit_code == 1 and "also defined in" in proc.stderr
    assert on_tree(["render", "qwen-rephrase"]).exit_code == 0


def test_unknown_recipe_has_did_you_mean(on_tree):
    proc = on_tree(["render", "good-recipes"])
    assert proc.exit_code == 1 and "did you mean 'good-recipe'?" in proc.stderr



def write_recipe(root: Path, recipe_id: str, raw: dict) -> Path:
    (root / recipe_id).mkdir()
    path = root / recipe_id / "recipe.yaml"
    path.write_text(text(raw), encoding="utf-8")
    return path


def test_var_typo_in_a_child_recipe_names_its_file_and_suggests(tree):
    path = write_recipe(tree, "tiny-typo", {"extends": "tiny-rephrase", "vars": {"lora_rr": 8}})
    with pytest.raises(RecipeError) as exc:
        load_recipe("tiny-typo")
    assert str(exc.value) == (f"{path}: vars.lora_rr: not read by template 'qwen.yaml.j2', so it would change "
                              "nothing (did you mean 'lora_r'?)")


def test_template_vars_are_read_through_extends(tree):
    assert {"base_model", "lora_r", "eval_steps", "dataset_num_proc"} <= recipes.template_variables("qwen.yaml.j2")
    assert not recipes.RENDER_SUPPLIED & recipes.template_variables("qwen.yaml.j2")


def test_too_long_is_a_data_key(tree):
    write_recipe(tree, "tiny-trunc", {"extends": "tiny-rephrase", "data": {"too_long": "truncate"}})
    assert load_recipe("tiny-trunc").too_long == "truncate"
    assert load_recipe("tiny-rephrase").too_long == "drop"
    assert load_recipe("tiny-rephrase", {"data.too_long": "error"}).too_long == "error"
    assert "data.too_long" in recipes.DATA_KEYS


def test_every_shipped_recipe_loads_and_discover_still_works():
    assert {"tiny-rephrase", "qwen-rephrase", "scratch-rephrase"} <= set(discover())
    for recipe_id in discover():
        load_recipe(recipe_id)
