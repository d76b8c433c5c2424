"""`ftr lint` and `ftr convert`: parse the options, call the library, turn data errors into lines and exit 1."""

import sys

import click

from .codes import help_text
from .formats import FORMATS
from .limits import CHARS_PER_TOKEN, DEFAULT_SEQUENCE_LEN, TOO_LONG

TOO_LONG_HELP = (f"Rows over sequence_len x {CHARS_PER_TOKEN} characters (the recipe's, else {DEFAULT_SEQUENCE_LEN}): "
                 "drop them (listed in the manifest), truncate them, or treat them as errors. Default: the "
                 "recipe's data.too_long, else drop.")


ENCODING_HELP = ("The file's text encoding when it is not UTF-8 (a Python codec: cp1258, cp1252, gb18030, ...); "
                 "default: the recipe's data.encoding, else UTF-8 (or what a byte-order mark says).")


def _recipe(recipe_id, sets=(), sets_text=""):
    """The recipe behind --recipe, with the --set/--sets overrides read as `ftr train` reads them (a typed
    data.path is relative to the current folder), or a one-line error."""
    if sets or sets_text:
        from ftr.recipes import RecipeError, split_sets
        from ftr.recipes_cli import load_or_fail

        try:
            items = split_sets(sets_text)
        except RecipeError as exc:
            raise click.ClickException(str(exc)) from None
        return load_or_fail(recipe_id, (*items, *sets))
    from .lint import resolve_recipe

    try:
        return resolve_recipe(recipe_id)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.command(epilog=help_text())
@click.argument("path", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format (default: detected from the keys).")
@click.option("--recipe", help="Recipe id: its format, system prompt, tokenizer and sequence_len; without PATH, "
              "its data file.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key as `ftr train --set` does (needs --recipe); a data.path is relative to "
                   "the current folder. Repeatable.")
@click.option("--sets", "sets_text", default="", metavar="'KEY=VALUE ...'",
              help="Several overrides in one string, as `ftr train --sets` (make lint SET='...').")
@click.option("--system-prompt", help="System prompt for rows without one (default: the recipe's).")
@click.option("--max-per-class", type=int, default=0, show_default=True,
              help="Print at most this many problems of each class (0: all).")
@click.option("--too-long", type=click.Choice(TOO_LONG), help=TOO_LONG_HELP)
@click.option("--encoding", help=ENCODING_HELP)
def lint(path, fmt, recipe, sets, sets_text, system_prompt, max_per_class, too_long, encoding):
    """Check a dataset file (PATH, else the --recipe's data file); one line per problem, then a summary. Exit 1
    on errors."""
    from .lint import format_summary, lint_file

    if (sets or sets_text) and not recipe:
        raise click.UsageError("--set/--sets override a recipe: pass --recipe ID")
    loaded = _recipe(recipe, sets, sets_text) if recipe else None
    if path is None:
        if loaded is None:
            raise click.UsageError("give a PATH, or --recipe ID to lint the recipe's data file")
        try:
            path = str(loaded.ensure_data())
        except ValueError as exc:  # a missing file, a failed generator
            raise click.ClickException(str(exc)) from None
    try:
        report = lint_file(path, fmt=fmt, system_prompt=system_prompt, recipe=loaded, too_long=too_long,
                           encoding=encoding)
    except OSError as exc:  # e.g. the recipe's tokenizer folder is missing
        raise click.ClickException(str(exc)) from None
    for line in report.lines(max_per_class):
        click.echo(line)
    click.echo(format_summary(report.summary))
    sys.exit(1 if report.errors else 0)


@click.command()
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format (default: the recipe's, else detected).")
@click.option("-o", "--out", "outdir", required=True, help="Output folder: train/val/test.jsonl and manifest.json.")
@click.option("--drop-invalid", is_flag=True, help="Drop records with errors (listed in the manifest) instead of failing.")
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="train,val,test fractions.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--system-prompt", help="System prompt for rows without one (default: the recipe's).")
@click.option("--recipe", help="Recipe id: defaults for --format, --system-prompt, role alternation, sequence_len "
              "and --too-long.")
@click.option("--too-long", type=click.Choice(TOO_LONG), help=TOO_LONG_HELP)
@click.option("--force", is_flag=True, help="Write into an output folder that holds other files (they are left "
              "untouched; a folder holding the input is always refused).")
@click.option("--encoding", help=ENCODING_HELP)
def convert(path, fmt, outdir, drop_invalid, split, seed, system_prompt, recipe, too_long, force, encoding):
    """Convert a dataset to Axolotl chat rows with train/val/test splits and a manifest."""
    from .convert import convert_file
    from .errors import DataError, ProblemLog
    from .recipe_options import with_recipe

    options = with_recipe(_recipe(recipe) if recipe else None, fmt=fmt, system_prompt=system_prompt,
                          too_long=too_long, encoding=encoding or None)
    try:
        fractions = tuple(float(part) for part in split.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three numbers like 0.8,0.1,0.1, got {split!r}", param_hint="--split")
    log = ProblemLog(path, lambda line: click.echo(line, err=True))
    try:
        manifest = convert_file(path, outdir, split=fractions, seed=seed, drop_invalid=drop_invalid, force=force,
                                on_warning=log, **options)
    except DataError as exc:
        log.close()
        click.echo(str(exc), err=True)
        hint = " (fix the errors, or --drop-invalid to skip those records)" if not (exc.fatal or drop_invalid) else ""
        click.echo(f"{path}: nothing written{hint}", err=True)
        sys.exit(1)
    except ValueError as exc:  # a bad --split
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # e.g. the output folder is not writable, or the disk is full
        raise click.ClickException(f"{outdir}: nothing written: {exc}") from None
    log.close()
    outputs = manifest["outputs"]
    sizes = ", ".join(f"{name} {outputs[name]['rows']}" for name in outputs)
    click.echo(f"{outdir}: {manifest['kept']} rows ({sizes}); {len(manifest['rejected'])} rejected, "
               f"{manifest['warnings']} warnings; manifest.json written")
    if empty := [name for name in ("val", "test") if outputs[name]["rows"] == 0]:
        from .splits import MIN_HELD_OUT

        click.echo(f"{outdir}: the {' and '.join(empty)} split is empty ({manifest['kept']} rows; val and test get "
                   f"a row each from {MIN_HELD_OUT} rows on)", err=True)
