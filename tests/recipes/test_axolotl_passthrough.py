"""An `axolotl:` mapping in a recipe (or --set axolotl.KEY=VALUE) reaches the rendered YAML as written, with no
template edit; Axolotl's own schema decides which keys exist (it would drop an unknown one without a word)."""


import pytest
import yaml
from click.testing import CliRunner

from ftr import paths
from ftr.recipes import RecipeError, load_recipe, parse_sets, render
from ftr.recipes_cli import render as render_cli
from ftr.validate import validate_yaml


def test_a_key_no_template_names_reaches_the_yaml_and_passes_axolotl():
    sets = parse_sets(["axolotl.neftune_noise_alpha=5", "axolotl.torch_compile=true"])
    text = render(load_recipe("tiny-rephrase", sets))
    config = yaml.safe_load(text)
    assert config["neftune_noise_alpha"] == 5 and config["torch_compile"] is True
    for key in ("neftune_noise_alpha", "torch_compile"):
        assert key not in (paths.TEMPLATES_DIR / "_base.yaml.j2").read_text(encoding="utf-8")
    result = validate_yaml(text)
    assert "neftune_noise_alpha" not in result.changed


def test_without_axolotl_keys_the_render_has_no_passthrough_block():
    assert "passed through" not in render(load_recipe("tiny-rephrase"))


@pytest.mark.parametrize("key, close", [("neftune_noise_alph", "neftune_noise_alpha"), ("torch_compil", "torch_compile")])
def test_a_misspelt_key_is_refused_by_axolotls_schema(key, close):
    recipe = load_recipe("tiny-rephrase", {f"axolotl.{key}": 5})
    with pytest.raises(RecipeError, match=rf"axolotl.{key}: not a key Axolotl's schema knows.*did you mean '{close}'"):
        render(recipe)


def test_validate_refuses_an_unknown_key_in_a_yaml_file():
    text = render(load_recipe("tiny-rephrase")) + "neftune_noise_alph: 5\n"
    with pytest.raises(ValueError, match=r"neftune_noise_alph: not a key .*did you mean 'neftune_noise_alpha'"):
        validate_yaml(text)


def test_a_key_the_template_places_is_refused():
    with pytest.raises(RecipeError, match=r"axolotl.lora_r: the template already places 'lora_r'.*vars.lora_r"):
        render(load_recipe("tiny-rephrase", {"axolotl.lora_r": 8}))


def test_cli_set_axolotl_key_in_process(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD_DIR", tmp_path)
    runner = CliRunner()
    ok = runner.invoke(render_cli, ["tiny-rephrase", "--set", "axolotl.neftune_noise_alpha=5"])
    assert ok.exit_code == 0 and yaml.safe_load(ok.output)["neftune_noise_alpha"] == 5, ok.output
    bad = runner.invoke(render_cli, ["tiny-rephrase", "--sets", "axolotl.neftune_noise_alph=5"])
    assert bad.exit_code == 1 and "did you mean 'neftune_noise_alpha'" in bad.output and bad.exception is not None
    assert not isinstance(bad.exception, RecipeError)  # a ClickException's exit, not a traceback



def test_a_recipe_files_axolotl_block_with_a_plugin_and_its_keys(tree):
    (tree / "tiny-plugin").mkdir()
    (tree / "tiny-plugin" / "recipe.yaml").write_text(yaml.safe_dump({
        "extends": "tiny-rephrase",
        "axolotl": {"plugins": ["axolotl.integrations.liger.LigerPlugin"], "liger_rms_norm": True,
                    "neftune_noise_alpha": 5.0}}), encoding="utf-8")
    text = render(load_recipe("tiny-plugin"))
    config = yaml.safe_load(text)
    # the recipe's plugins come after the template's own (ftr.async_steps is on by default)
    assert config["plugins"] == ["ftr.async_steps.AsyncStepsPlugin", "axolotl.integrations.liger.LigerPlugin"]
    assert config["liger_rms_norm"] is True and text.count("plugins:") == 1
    validate_yaml(text)
    with pytest.raises(RecipeError, match=r"axolotl.liger_rms_norm: not a key"):  # a plugin's key needs the plugin
        render(load_recipe("tiny-plugin", {"axolotl.plugins": None}))
