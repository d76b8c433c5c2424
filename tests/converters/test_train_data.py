"""`ftr train`'s conversion step: too-long rows reported by file and line, and empty splits stopped before Axolotl."""

import json

import click
import pytest

from converters_data import rephrase_rows

recipes = pytest.importorskip("ftr.recipes")
from ftr.converters.recipe_data import convert_recipe_data as convert_data  # noqa: E402


def recipe_on(path, **data):
    return recipes.load_recipe("tiny-rephrase", {"data.path": str(path), **{f"data.{k}": v for k, v in data.items()}})


def raw_file(tmp_path, rows):
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def test_too_long_rows_are_printed_by_line_and_dropped(tmp_path, capsys):
    rows = rephrase_rows(20)
    rows[7]["query"] = "sữa " * 5000  # 20,000 characters > tiny-rephrase's 512 tokens x 10
    path = raw_file(tmp_path, rows)
    manifest = convert_data(recipe_on(path), tmp_path / "data")
    assert manifest["kept"] == 19 and "[too_long]" in manifest["rejected"][0]["reason"]
    err = capsys.readouterr().err
    line = manifest["rejected"][0]["line"]
    assert f"{path}:{line}: warning: record 7: " in err and "dropped (too_long: drop) [too_long]" in err
    assert "19 rows (train" in err and "1 rejected" in err


def test_the_recipes_too_long_choice_is_used(tmp_path, capsys):
    rows = rephrase_rows(20)
    rows[7]["query"] = "sữa " * 5000
    manifest = convert_data(recipe_on(raw_file(tmp_path, rows), too_long="truncate"), tmp_path / "data")
    assert manifest["kept"] == 20 and manifest["too_long"]["policy"] == "truncate"
    assert "truncated the user text" in capsys.readouterr().err
    with pytest.raises(click.ClickException) as caught:
        convert_data(recipe_on(raw_file(tmp_path, rows), too_long="error"), tmp_path / "data2")
    assert "record 7:" in caught.value.message and "[too_long]" in caught.value.message


def test_an_empty_val_split_stops_before_preprocessing(tmp_path):
    rows = rephrase_rows(3)
    rows[1]["reasoning"] = "dài " * 100_000  # inside the JSON target: dropped, not cut
    with pytest.raises(click.ClickException) as caught:
        convert_data(recipe_on(raw_file(tmp_path, rows), too_long="truncate"), tmp_path / "data")
    message = caught.value.message
    assert "the val split of" in message and "2 rows kept of 3 records" in message and "too_long 1" in message


@pytest.mark.slow
def test_ftr_train_on_a_file_that_leaves_val_empty_exits_cleanly(ftr, tmp_path):
    rows = rephrase_rows(3)
    rows[1]["query"] = "x" * 1_000_000
    path = raw_file(tmp_path, rows)
    proc = ftr(["train", "tiny-rephrase", "--set", f"data.path={path}"], check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "StopIteration" not in proc.stderr
    assert f"{path}:" in proc.stderr and "[too_long]" in proc.stderr
    assert "the val split of" in proc.stderr


def test_ftr_convert_with_the_recipe_writes_what_ftr_train_converts(tmp_path):
    """One recipe-to-converter mapping (recipe_options): the same format, system prompt, sequence_len and too_long."""
    from click.testing import CliRunner

    from ftr.converters.cli import convert
    from ftr.converters.limits import char_bound

    rows = rephrase_rows(20)
    rows[7]["query"] = "sữa " * 5000  # over tiny-rephrase's sequence_len in characters: cut by both
    path = raw_file(tmp_path, rows)
    recipe = recipe_on(path, too_long="truncate")
    trained = convert_data(recipe, tmp_path / "train")
    split = ",".join(str(fraction) for fraction in recipe.split)
    result = CliRunner().invoke(convert, [str(path), "-o", str(tmp_path / "cli"), "--recipe", "tiny-rephrase",
                                          "--too-long", "truncate", "--split", split, "--seed", str(recipe.seed)])
    assert result.exit_code == 0, result.output
    converted = json.loads((tmp_path / "cli" / "manifest.json").read_text(encoding="utf-8"))
    assert trained["system_prompt"] == converted["system_prompt"] == recipe.system_prompt
    bound = {"policy": "truncate", "max_characters": char_bound(recipe.sequence_len)}
    assert trained["too_long"] == converted["too_long"] == bound
    assert [out["sha256"] for out in trained["outputs"].values()] == [
        out["sha256"] for out in converted["outputs"].values()]
