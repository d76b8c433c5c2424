"""The tasks a recipe trains for (`task: rephrase | chat`), one module each: its records' fields, record -> chat
row, stratify key, answer parser, scorer and measured metric names, headline metrics, and whether `ftr serve`
offers /predict. Converters, recipes, eval, merge and serve import the task instead of testing names.

`data.format` is the input shape; a task lists the formats it claims (task.FORMATS; chat: None, every other
one), and a recipe whose format is not its task's is refused (ftr.validate.task_problem).
"""

from ftr.tasks import chat, rephrase
from ftr.tasks.rephrase import InvalidModelOutput  # noqa: F401 (what a task's parse_answer raises)

TASKS = {rephrase.NAME: rephrase, chat.NAME: chat}
DEFAULT = chat.NAME  # recipes/_defaults.yaml states it too
ALIASES = {"text": chat.NAME}  # `ftr score --task text`, as before tasks had names
# Metrics every task gets besides its scorer's: ftr eval measures perplexity, ftr judge writes judge.<score>
# (the rubric's scores, ftr.eval.judge.SCORES).
PERPLEXITY = "perplexity"
JUDGED = tuple(f"judge.{name}" for name in ("accuracy", "completeness", "fluency", "professionalism", "overall"))


def get(name: str):
    """The task module called `name` (or one of its ALIASES); ValueError naming the known tasks otherwise."""
    task = TASKS.get(ALIASES.get(name, name))
    if task is None:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return task


def of(recipe):
    """The task module of a loaded recipe."""
    return get(recipe.task)


def of_format(fmt: str):
    """The task whose records input format `fmt` holds (ftr convert without a recipe: stratification, cuts)."""
    return next((task for task in TASKS.values() if fmt in (task.FORMATS or ())), chat)


def measured(name: str) -> tuple[str, ...]:
    """Every metric path a bar of a `name` recipe can name: the scorer's, perplexity, the judge's."""
    return (*get(name).METRICS, PERPLEXITY, *JUDGED)


def score(name: str, references: list[str], predictions: list[str]) -> dict:
    """Task `name`'s metrics for predicted strings against reference strings (same order), "task" naming it."""
    task = get(name)
    return {"task": task.NAME, **task.score(references, predictions)}
