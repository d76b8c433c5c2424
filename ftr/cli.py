"""The `ftr` command line: a click group whose verbs are imported only when called.

Each verb lives next to the code it drives (converters/cli.py, eval/cli.py, ftr/*.py); importing it lazily keeps
`ftr --help` and `ftr list` instant, since torch and axolotl are imported only inside the verbs that need them.
"""

import importlib

import click

# verb -> "module:attribute" of its click command
VERBS = {
    "list": "ftr.recipes_cli:list_recipes",
    "render": "ftr.recipes_cli:render",
    "validate": "ftr.recipes_cli:validate",
    "tiny-models": "ftr.tiny_models:tiny_models",
    "train": "ftr.train:train",
    "lint": "ftr.converters.cli:lint",
    "convert": "ftr.converters.cli:convert",
    "score": "ftr.eval.cli:score",
    "eval": "ftr.eval.cli:eval_cmd",
    "judge": "ftr.eval.cli:judge",
    "merge": "ftr.merge:merge",
    "serve": "ftr.serve:serve",
}


class LazyGroup(click.Group):
    """A click group that imports a verb's module only when that verb is looked up."""

    def list_commands(self, ctx):
        return sorted(VERBS)

    def get_command(self, ctx, name):
        target = VERBS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        # An import error inside the verb's module is a bug to see whole, never a verb that "does not exist".
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx, formatter):
        # One line per verb without importing every module: --help must stay instant.
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


HELP = {
    "list": "List recipes with model, dataset and a one-line description.",
    "render": "Render a recipe's Axolotl YAML (typed --set overrides).",
    "validate": "Check a recipe or YAML file with Axolotl's own validate_config (CPU, no model).",
    "tiny-models": "Build the tiny offline stand-in models with the real Qwen2.5/Mistral tokenizers.",
    "train": "Convert data, render, preprocess and train a recipe through Axolotl.",
    "lint": "Check a dataset file; one line per problem, exit 1 on errors.",
    "convert": "Convert a dataset to Axolotl chat rows with train/val/test splits and a manifest.",
    "score": "Score prediction files against references (no model needed).",
    "eval": "Batched greedy generation on a split, then score, perplexity and report.",
    "judge": "LLM-as-judge of a run's predictions through an OpenAI-compatible endpoint.",
    "merge": "Merge the run's adapter into a 16-bit base and verify it against the adapter.",
    "serve": "Serve a trained recipe: OpenAI-compatible chat and /predict.",
}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ftr")
def main():
    """ftr: fine-tune recipes. Raw data -> Axolotl recipe -> trained, evaluated, merged model."""


if __name__ == "__main__":
    main()
