"""A recipe's raw data converted into a run's data folder, for `ftr train` and for `ftr eval` of a run that has
none yet: the recipe's data options applied, warnings printed by file and line, errors and empty splits stopped
here with the fix, before anything tokenises.
"""

import re
import shlex
from collections import Counter
from pathlib import Path

import click

from .convert import convert_file
from .errors import DataError, ProblemLog
from .recipe_options import recipe_options
from .splits import MIN_HELD_OUT


def convert_recipe_data(recipe, outdir: Path, drop_invalid: bool | None = None) -> dict:
    """Convert the recipe's raw data into train/val/test chat rows (errors abort, naming file and line, unless
    `drop_invalid` or the recipe's data.drop_invalid drops those records).

    Warnings are printed by file and line (rows dropped as too long among them); empty train or val splits stop
    here, before preprocessing, since Axolotl needs rows in both; an empty test split is said.
    """
    if drop_invalid is None:
        drop_invalid = bool(recipe.data.get("drop_invalid"))
    try:
        path = recipe.ensure_data()
    except ValueError as exc:  # ftr.recipes.RecipeError: a missing file, a failed generator
        raise click.ClickException(str(exc)) from None
    log = ProblemLog(path, lambda line: click.echo(line, err=True), lint_command=lint_command(recipe))
    try:
        manifest = convert_file(path, outdir, split=recipe.split, seed=recipe.seed, drop_invalid=drop_invalid,
                                on_warning=log, **recipe_options(recipe))
    except DataError as exc:
        command = lint_command(recipe)
        message = str(exc).replace(f"`ftr lint {exc.path}`", f"`{command}`")
        drop = "" if exc.fatal else (f", or drop the records with errors: `ftr train {recipe.id}"
                                     f"{set_args(recipe)} --drop-invalid` (data.drop_invalid: true)")
        raise click.ClickException(f"data conversion failed:\n{message}\n(`{command}` lists every problem{drop})"
                                   ) from None
    except (OSError, ValueError) as exc:  # an unwritable build folder, a bad split or too_long value
        raise click.ClickException(f"data conversion failed: {exc}") from None
    finally:
        log.close()
    rows = {split: out["rows"] for split, out in manifest["outputs"].items()}
    click.echo(f"{outdir}: {manifest['kept']} rows ({', '.join(f'{k} {n}' for k, n in rows.items())}); "
               f"{len(manifest['rejected'])} rejected, {manifest['warnings']} warnings", err=True)
    require_train_and_val(manifest, path, outdir)
    if manifest["outputs"]["test"]["rows"] == 0:
        click.echo(f"{outdir}: the test split is empty ({manifest['kept']} rows kept; val and test get a row each "
                   f"from {MIN_HELD_OUT} rows on): `ftr eval {recipe.id}` will have nothing to score", err=True)
    return manifest


def lint_command(recipe) -> str:
    """The `ftr lint` command that reproduces a conversion's errors: the recipe's format, system prompt,
    tokenizer and sequence_len, and the overrides it was loaded with."""
    return f"ftr lint --recipe {recipe.id}{set_args(recipe)}"


def set_args(recipe) -> str:
    """The recipe's overrides as ` --set KEY=VALUE` words, quoted for a shell."""
    return "".join(f" --set {shlex.quote(f'{key}={_typed_text(value)}')}"
                   for key, value in (getattr(recipe, "sets", None) or {}).items()
                   if key != "data.drop_invalid")


def _typed_text(value) -> str:
    """A --set value as it is typed back: true/false/null as the CLI reads them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def require_train_and_val(manifest: dict, path: Path, outdir: Path) -> None:
    """Stop with the reasons when the train or val split is empty (Axolotl would fail later, less clearly)."""
    empty = [split for split in ("train", "val") if manifest["outputs"][split]["rows"] == 0]
    if not empty:
        return
    reasons = Counter(code for entry in manifest["rejected"] for code in re.findall(r"\[(\w+)\]", entry["reason"]))
    why = f"; rejected: {', '.join(f'{code} {n}' for code, n in reasons.most_common())}" if reasons else ""
    raise click.ClickException(
        f"the {' and '.join(empty)} split of {path} is empty ({manifest['kept']} rows kept of "
        f"{manifest['input']['records']} records{why}; see {outdir / 'manifest.json'}): Axolotl needs rows in both "
        "train and val. Add rows, or check data.split and data.too_long.")
