"""ftr ("fine-tune recipes"): the recipe layer around Axolotl.

Data flows converters (ftr.converters) -> recipes (ftr.recipes) -> train (ftr.train) -> eval/merge/serve.
"""

__version__ = "0.1.0"
