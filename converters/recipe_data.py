"""A recipe's raw data converted into a run's data folder, for `ftr train` and for `ftr eval` of a run that has
none yet: the recipe's data options applied, warnings printed by file and line, errors and empty splits stopped
here with the fix, before anything tokenises.
"""

import re
from collections import Counter
from pathlib import Path

import click

from .convert import convert_file
from .errors import DataError, ProblemLog
from .lint import recipe_scan_options


def convert_recipe_data(recipe, outdir: Path) -> dict:
    """Convert the recipe's raw data into train/val/test chat rows (errors abort, naming file and line).

    Warnings are printed by file and line (rows dropped as too long among them); empty train or val splits stop
    here, before preprocessing, since Axolotl needs rows in both.
    """
    try:
        path = recipe.ensure_data()
    except ValueError as exc:  # ftr.recipes.RecipeError: a missing file, a failed generator
        raise click.ClickException(str(exc)) from None
    log = ProblemLog(path, lambda line: click.echo(line, err=True))
    try:
        manifest = convert_file(path, outdir, fmt=recipe.data_format, system_prompt=recipe.system_prompt,
                                split=recipe.split, seed=recipe.seed, requires_alternating=recipe.requires_alternating,
                                sequence_len=recipe.sequence_len, too_long=recipe.data.get("too_long", "drop"),
                                **recipe_scan_options(recipe),
                                on_warning=log)
    except DataError as exc:
        raise click.ClickException(f"data conversion failed:\n{exc}\n(run `ftr lint {recipe.data['path']}` "
                                   "for every problem, or convert with --drop-invalid)") from None
    except (OSError, ValueError) as exc:  # an unwritable build folder, a bad split or too_long value
        raise click.ClickException(f"data conversion failed: {exc}") from None
    finally:
        log.close()
    rows = {split: out["rows"] for split, out in manifest["outputs"].items()}
    click.echo(f"{outdir}: {manifest['kept']} rows ({', '.join(f'{k} {n}' for k, n in rows.items())}); "
               f"{len(manifest['rejected'])} rejected, {manifest['warnings']} warnings", err=True)
    require_train_and_val(manifest, path, outdir)
    return manifest


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
