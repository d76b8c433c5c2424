"""`ftr list`, `ftr render` and `ftr validate`: thin click verbs over ftr.recipes and ftr.validate."""

import functools
import os
from pathlib import Path

import click

from ftr.paths import typed
from ftr.recipes import (RecipeError, invocation, load_recipe, parse_sets, render as render_recipe, scan,
                         split_sets)


def set_option(command):
    """--set KEY=VALUE (repeatable) and --sets 'KEY=VALUE ...' (one string, as `make ... SET='...'` passes it),
    handed to the command together as `sets`: --sets first, so a --set of the same key wins."""

    @click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                  help="Override a recipe variable (typed: int, float, bool, string). Repeatable.")
    @click.option("--sets", "sets_text", default="", metavar="'KEY=VALUE ...'",
                  help="Several overrides in one string, split like a shell; words without KEY= join the value "
                       "before them (SET='data.system_prompt=Be brief' is one override).")
    @functools.wraps(command)
    def wrapper(*args, sets, sets_text, **kwargs):
        try:
            items = split_sets(sets_text)
        except RecipeError as exc:
            raise click.ClickException(str(exc)) from None
        return command(*args, sets=(*items, *sets), **kwargs)

    return wrapper


def load_or_fail(recipe_id: str, sets=()):
    """The recipe with the command line's overrides; a typed data.path is relative to the current folder."""
    try:
        overrides = parse_sets(list(sets))
        if isinstance(overrides.get("data.path"), str):
            overrides["data.path"] = typed(overrides["data.path"])
        return load_recipe(recipe_id, overrides)
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("list")
def list_recipes():
    """List recipes with model, dataset and a one-line description.

    A recipe that does not load is named on stderr with the reason, the others are still listed on stdout, and
    the exit status is 1.
    """
    found, twice = scan()
    rows, broken = [], list(twice.values())
    for recipe_id in sorted(found.keys() - twice.keys()):
        try:
            recipe = load_recipe(recipe_id)
        except RecipeError as exc:
            broken.append(str(exc))
            continue
        rows.append((recipe_id, recipe.base_model, recipe.data["path"], recipe.description))
    widths = [max(len(r[i]) for r in rows + [("recipe", "model", "data", "")]) for i in range(3)]
    click.echo(f"{'recipe':<{widths[0]}}  {'model':<{widths[1]}}  {'data':<{widths[2]}}  description")
    for row in rows:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    for message in broken:
        click.echo(f"Error: {message}", err=True)
    if broken:
        raise SystemExit(1)


@click.command("render")
@click.argument("recipe_id")
@set_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write here instead of stdout.")
def render(recipe_id, sets, output):
    """Render RECIPE_ID's Axolotl YAML."""
    text = _rendered(load_or_fail(recipe_id, sets))
    if output:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            # Temp + rename: replaces a link instead of writing through it (build/<id>/axolotl.yaml links into
            # the last completed run, which a render must never change).
            tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, output)
        except OSError as exc:
            raise click.ClickException(f"{output}: cannot write: {exc.strerror or exc}") from None
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _rendered(recipe) -> str:
    try:
        return render_recipe(recipe, command=invocation())
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None


def _is_file(target: str) -> bool:
    try:
        return Path(target).is_file()
    except (OSError, ValueError):  # a name too long for the file system: not a file, so a recipe id
        return False


@click.command("validate")
@click.argument("target")
@set_option
def validate(target, sets):
    """Validate a recipe id or an Axolotl YAML FILE with Axolotl's validate_config (CPU, no model)."""
    from ftr.validate import validate_yaml

    if _is_file(target):
        if sets:
            raise click.UsageError(f"--set/--sets override a recipe; {target} is a rendered YAML file")
        try:
            text = Path(target).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{target}: cannot read as UTF-8 text: {exc}") from None
    else:
        text = _rendered(load_or_fail(target, sets))
    try:
        result = validate_yaml(text)
    except ValueError as exc:
        raise click.ClickException(f"{target}: Axolotl rejected the config:\n{exc}") from None
    for key, (ours, theirs) in sorted(result.changed.items()):
        click.echo(f"{target}: changed by Axolotl: {key}: {ours!r} -> {theirs!r}")
    for message in result.warnings:
        click.echo(f"{target}: warning: {message}")
    click.echo(f"{target}: valid ({len(result.changed)} changed, {len(result.warnings)} warnings)")
