"""What a recipe says about reading and converting its data, as the keyword options of lint_file and convert_file:
one mapping, so that `ftr lint --recipe`, `ftr convert --recipe` and `ftr train` read a recipe's data alike.

A recipe is duck-typed (tests pass small stand-ins): data_format, system_prompt, requires_alternating and
sequence_len are required; `data` (the recipe's data: section) and supports_tools are optional.
"""

SCAN_KEYS = ("encoding", "fields", "roles", "conflicts", "placeholders")


def recipe_options(recipe) -> dict:
    """The recipe's format (`fmt`), system prompt, alternation rule, sequence_len and too_long policy, with its
    recipe_scan_options: every keyword lint_file and convert_file take from a recipe."""
    return {"fmt": recipe.data_format, "system_prompt": recipe.system_prompt,
            "requires_alternating": recipe.requires_alternating, "sequence_len": recipe.sequence_len,
            "too_long": _data(recipe).get("too_long", "drop"), **recipe_scan_options(recipe)}


def recipe_scan_options(recipe) -> dict:
    """What a recipe says about reading its data beyond format and system prompt: the file's encoding, its field
    and role names, whether its template renders tools, what a conflicting duplicate is, the placeholders to fill,
    and that the format is the recipe's (pipeline.Scan's keys)."""
    data = _data(recipe)
    options = {key: data[key] for key in SCAN_KEYS if data.get(key) is not None}
    return {**options, "supports_tools": bool(getattr(recipe, "supports_tools", True)), "format_from": "recipe"}


def given(options: dict) -> dict:
    """The options a caller set: those not None (None leaves the default, or the recipe's, in place)."""
    return {key: value for key, value in options.items() if value is not None}


def with_recipe(recipe, **options) -> dict:
    """The caller's options that are set (not None) over the recipe's (none without a recipe). A format the caller
    gives makes a format mismatch name --format as the fix, not the recipe."""
    options = given(options)
    if recipe is None:
        return options
    if "fmt" in options:
        options.setdefault("format_from", "--format")
    return {**recipe_options(recipe), **options}


def _data(recipe) -> dict:
    return getattr(recipe, "data", None) or {}
