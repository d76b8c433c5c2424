"""`ftr list`, `ftr render` and `ftr validate`: thin click verbs over ftr.recipes and ftr.validate."""

from pathlib import Path

import click

from ftr.recipes import RecipeError, discover, invocation, load_recipe, parse_sets, render as render_recipe

set_option = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                          help="Override a recipe variable (typed: int, float, bool, string). Repeatable.")


def load_or_fail(recipe_id: str, sets=()):
    try:
        return load_recipe(recipe_id, parse_sets(list(sets)))
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("list")
def list_recipes():
    """List recipes with model, dataset and a one-line description."""
    rows = []
    for recipe_id in discover():
        recipe = load_or_fail(recipe_id)
        rows.append((recipe_id, recipe.base_model, recipe.data["path"], recipe.description))
    widths = [max(len(r[i]) for r in rows + [("recipe", "model", "data", "")]) for i in range(3)]
    click.echo(f"{'recipe':<{widths[0]}}  {'model':<{widths[1]}}  {'data':<{widths[2]}}  description")
    for row in rows:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")


@click.command("render")
@click.argument("recipe_id")
@set_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write here instead of stdout.")
def render(recipe_id, sets, output):
    """Render RECIPE_ID's Axolotl YAML."""
    recipe = load_or_fail(recipe_id, sets)
    try:
        text = render_recipe(recipe, command=invocation())
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("validate")
@click.argument("target")
@set_option
def validate(target, sets):
    """Validate a recipe id or an Axolotl YAML FILE with Axolotl's validate_config (CPU, no model)."""
    from ftr.validate import validate_yaml

    path = Path(target)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        recipe = load_or_fail(target, sets)
        text = render_recipe(recipe, command=invocation())
    try:
        result = validate_yaml(text)
    except ValueError as exc:
        raise click.ClickException(f"{target}: Axolotl rejected the config:\n{exc}") from None
    for key, (ours, theirs) in sorted(result.changed.items()):
        click.echo(f"{target}: changed by Axolotl: {key}: {ours!r} -> {theirs!r}")
    for message in result.warnings:
        click.echo(f"{target}: warning: {message}")
    click.echo(f"{target}: valid ({len(result.changed)} changed, {len(result.warnings)} warnings)")
