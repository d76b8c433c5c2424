"""One module per task: the metric names each task lists are its scorer's real output, bars are metric paths (old
names refused, naming the new path), a recipe's task must fit its data format, and stratification is the task's."""

import json

import pytest

from ftr import tasks
from ftr.converters.formats import FORMATS, check_record
from ftr.recipes import RecipeError, load_recipe, parse_sets
from ftr.tasks import chat, rephrase
from ftr.validate import bar_problems, known_bars

RECORD = {"query": "sữa cho bé", "keyword": "sữa", "is_in_scope": True, "reasoning": "r", "message_banner": "b",
          "message_no_result": "n"}
TARGET = json.dumps({key: RECORD[key] for key in rephrase.TARGET}, ensure_ascii=False)
SAMPLES = {"rephrase": ([TARGET], [TARGET]), "chat": (["a b c"], ["a b c"])}


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_measured_names_are_the_scorers_real_output(name):
    """The names are listed (importing sklearn and sacrebleu is too slow for `ftr list`): they must not drift."""
    from ftr.eval.report import flatten, metric_value

    metrics = tasks.score(name, *SAMPLES[name])
    numbers = {key for key, value in flatten(metrics).items() if not isinstance(value, str)}
    assert numbers == set(tasks.get(name).METRICS)
    # every bar a recipe of this task may name resolves in what eval and judge write
    written = {**metrics, "perplexity": 1.0, "judge": {path.split(".", 1)[1]: 3.0 for path in tasks.JUDGED}}
    for bar in known_bars(name):
        assert metric_value(written, bar.removesuffix("_max")) is not None, bar
    assert set(tasks.get(name).HEADLINE) <= numbers


def test_judge_paths_are_the_rubrics_scores():
    from ftr.eval.judge import SCORES

    assert tasks.JUDGED == tuple(f"judge.{name}" for name in SCORES)


def test_every_input_format_belongs_to_one_task():
    assert {fmt: tasks.of_format(fmt).NAME for fmt in FORMATS} == {
        **{fmt: "chat" for fmt in FORMATS}, "rephrase": "rephrase"}  # chat takes every format no task claims
    for fmt in FORMATS:
        assert [name for name, task in tasks.TASKS.items() if fmt in (task.FORMATS or ())] in ([], ["rephrase"])


def test_bar_paths_good_renamed_and_misspelt():
    assert bar_problems({"per_class.false.recall": 0.9, "json_valid_rate": 0.95, "perplexity_max": 9.0,
                         "judge.overall": 4.0}, "rephrase") == []
    assert bar_problems({"bleu": 5.0, "length_ratio_max": 1.5}, "chat") == []
    assert bar_problems({"is_in_scope_recall_false": 0.9}, "rephrase") == [
        "bars.is_in_scope_recall_false: bars are metric paths now: write 'per_class.false.recall'"]
    assert "write 'judge.overall_max'" in bar_problems({"judge_overall_max": 5.0}, "chat")[0]
    [typo] = bar_problems({"per_class.flase.recall": 0.9}, "rephrase")
    assert "not a metric `ftr eval` measures for task 'rephrase'" in typo
    assert "(did you mean 'per_class.false.recall'?)" in typo
    [wrong_task] = bar_problems({"json_valid_rate": 0.95}, "chat")  # chat answers are not scored as JSON
    assert wrong_task.startswith("bars.json_valid_rate: not a metric")


def test_shipped_recipes_name_their_task():
    assert {name: load_recipe(name).task for name in ("qwen-rephrase", "tiny-rephrase", "scratch-rephrase",
                                                      "chat-lora", "mistral-stories", "qwen-domain-zh")} == {
        "qwen-rephrase": "rephrase", "tiny-rephrase": "rephrase", "scratch-rephrase": "rephrase",
        "chat-lora": "chat", "mistral-stories": "chat", "qwen-domain-zh": "chat"}


def test_set_task_must_fit_the_data_format():
    assert parse_sets(["task=rephrase"]) == {"task": "rephrase"}
    with pytest.raises(RecipeError, match=r"task 'rephrase' trains on data.format rephrase, not 'chat': set task"):
        load_recipe("chat-lora", {"task": "rephrase"})
    with pytest.raises(RecipeError, match=r"task 'chat' does not train on data.format 'rephrase' \(task rephrase's "
                                          r"records\): set task: rephrase"):
        load_recipe("tiny-rephrase", {"task": "chat"})
    with pytest.raises(RecipeError, match=r"--set task: must be one of rephrase, chat, got 'json'"):
        load_recipe("chat-lora", {"task": "json"})
    # task and format changed together are a rephrase recipe (the qwen-rephrase bars would not fit chat, so none)
    recipe = load_recipe("chat-lora", {"task": "rephrase", "data.format": "rephrase"})
    assert recipe.task == "rephrase" and tasks.of(recipe) is rephrase


def test_stratify_key_per_task():
    assert rephrase.STRATIFY_KEY == "is_in_scope" and chat.STRATIFY_KEY is None
    assert check_record(RECORD, "rephrase", "S").label == "is_in_scope=true"
    assert check_record({**RECORD, "is_in_scope": "yes"}, "rephrase", "S").label == "is_in_scope=?"
    chat_row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    assert check_record(chat_row, "chat", "S").label == "all"
    assert check_record({"instruction": "q", "output": "a"}, "instruct", "S").label == "all"


def test_rephrase_row_is_the_tasks_chat_row():
    row = check_record(dict(reversed(list(RECORD.items()))), "rephrase", "S").messages
    assert row == rephrase.to_chat(RECORD, "S")
    assert [m["role"] for m in row] == ["system", "user", "assistant"]
    assert list(json.loads(row[-1]["content"])) == list(rephrase.TARGET)
    assert rephrase.parse_answer(row[-1]["content"]) == {key: RECORD[key] for key in rephrase.TARGET}


def test_only_rephrase_offers_predict():
    assert {name: task.PREDICT for name, task in tasks.TASKS.items()} == {"rephrase": True, "chat": False}
    assert rephrase.predict_messages(rephrase.PredictRequest(query="q"), "S") == rephrase.to_chat(RECORD, "S")[:1] + [
        {"role": "user", "content": "q"}]
