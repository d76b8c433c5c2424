"""Checks before anything runs: a recipe's own keys and values (a pydantic schema), and a rendered Axolotl YAML
against Axolotl's own schema (`axolotl.utils.config.validate_config`) on CPU.

The recipe schema types and bounds every key the shipped recipes set, so `lora_r: -5`, `sequence_len: true` or
`data.format: evil` is refused naming the key, instead of surfacing as a traceback mid-training. Variables without
a declared type stay free. Axolotl's check loads no model or tokenizer: it is the pydantic validation Axolotl runs
before training, so a recipe that passes both fails later only for reasons that need the weights or the GPU.
"""

import difflib
import importlib
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ftr import tasks
from ftr.converters.chatshapes import FIELDS, ROLE_NAMES
from ftr.converters.formats import FORMATS
from ftr.converters.limits import TOO_LONG
from ftr.converters.pipeline import CONFLICTS
from ftr.converters.splits import check_fractions
from ftr.tiny_models import SHAPES

# The bar names before bars were metric paths: refused, naming the path that replaced each.
RENAMED_BARS = {"is_in_scope_recall_true": "per_class.true.recall",
                "is_in_scope_recall_false": "per_class.false.recall", "judge_overall": "judge.overall"}


def _path_like(text: str) -> str:
    """A value used as a file path must be one the file system can be asked about (a stat would raise)."""
    try:
        name = os.fsencode(text)
    except UnicodeEncodeError:
        raise ValueError("must be text a file name can hold (it has a lone surrogate)") from None
    if b"\0" in name:
        raise ValueError("must not contain a NUL character")
    if max(len(part) for part in name.split(b"/")) > 255:
        raise ValueError("has a path component longer than 255 bytes")
    return text


Text = Annotated[str, Field(min_length=1)]
PathText = Annotated[str, Field(min_length=1), AfterValidator(_path_like)]
Count = Annotated[int, Field(gt=0)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]  # numpy's seed range
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1)]
PlaceholderName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Split = Annotated[list[Fraction], Field(min_length=3, max_length=3), AfterValidator(check_fractions)]

# Fields default to None without allowing it: pydantic does not validate defaults, so a file that leaves a key out
# passes (its parent or the merged recipe must supply it), while an explicit `null` is still refused.
_STRICT = ConfigDict(strict=True, extra="forbid")


class DataSchema(BaseModel):
    """`data:`: where the raw file is, its format, the system prompt added to rows without one (null: none), how it
    is read (encoding, field and role names, placeholders to fill) and how it is split."""

    model_config = _STRICT
    path: PathText = None
    format: Literal[FORMATS] = None
    system_prompt: str | None = None  # null: rows keep what they have (Qwen2.5's template then adds its default)
    split: Split = None
    seed: Seed = None
    generate: Text | None = None
    too_long: Literal[TOO_LONG] = None
    encoding: Text = None  # a Python codec for a file not in UTF-8 (cp1258, gb18030, ...)
    fields: dict[Literal[FIELDS], Text] = None  # ftr's field name -> the file's key (converters/chatshapes)
    roles: dict[Literal[ROLE_NAMES], list[Text]] = None  # ftr's role -> the file's names for it
    conflicts: Literal[CONFLICTS] = None  # same prompt, another answer: keep (a warning) or error
    placeholders: dict[PlaceholderName, str] = None  # {{name}} in a text -> this text (converters/formats)
    drop_invalid: bool = None  # convert without the records that have errors (listed in the manifest)


class VarsSchema(BaseModel):
    """`vars:`: the values the templates place. Which names a recipe may set is the template's business."""

    model_config = ConfigDict(strict=True, extra="allow")
    base_model: PathText = None  # a hub id or a local folder
    chat_template: Text = None
    adapter: Literal["lora", "qlora"] | None = None  # the templates place LoRA keys only
    load_in_4bit: bool = None
    lora_r: Count = None
    lora_alpha: Count = None
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = None
    lora_target_linear: bool = None
    lora_kernels: bool = None
    sequence_len: Count = None
    sample_packing: bool = None
    eval_sample_packing: bool = None
    group_by_length: bool = None
    micro_batch_size: Count = None
    gradient_accumulation_steps: Count = None
    num_epochs: Positive = None
    max_steps: Count | None = None
    optimizer: Text = None
    learning_rate: Positive = None
    lr_scheduler: Text = None
    warmup_ratio: Fraction = None
    weight_decay: NonNegative = None
    max_grad_norm: NonNegative | None = None
    seed: Seed = None
    bf16: Literal["auto", True, False] = None
    fp16: bool = None
    tf32: bool = None
    attn_implementation: Text = None
    gradient_checkpointing: Literal[True, False, "offload", "offload_disk"] = None
    liger: bool = None
    cut_cross_entropy: bool = None
    packed_attention: bool = None
    async_steps: bool = None
    evals_per_epoch: Count | None = None
    eval_steps: Positive | None = None  # a float below 1 is a fraction of the run (transformers)
    save_steps: Positive | None = None
    save_total_limit: Count | None = None
    early_stopping_patience: Count | None = None
    load_best_model_at_end: bool = None
    logging_steps: Count | None = None
    dataset_num_proc: Count | None = None


AXOLOTL_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _axolotl_keys(keys: dict) -> dict:
    bad = [key for key in keys if not AXOLOTL_KEY.match(key)]
    if bad:
        raise ValueError(f"key {bad[0]!r}: an Axolotl key is a name of letters, digits and _")
    return keys


def _extends(value):
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"must be a string or a list of strings (recipe ids, _defaults, profiles/NAME), got {_shown(value)}")
    return value


class RecipeFileSchema(BaseModel):
    """One recipe.yaml (or _defaults.yaml, a profile) as written: every key optional here; the merged `extends`
    chain must have the required ones."""

    model_config = _STRICT
    description: str = None
    task: Literal[tuple(tasks.TASKS)] = None  # ftr.tasks: what the model learns and how eval scores it
    family: Text = None  # recipes/families/<family>.yaml: model template, chat template, special tokens
    template: Text = None  # a custom model template instead of the family's
    data: DataSchema = None
    vars: VarsSchema = None
    axolotl: Annotated[dict[str, Any], AfterValidator(_axolotl_keys)] = None  # passed into the YAML as written
    bars: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = None
    tokenizer_stand_in: Literal[tuple(SHAPES)] | None = None
    extends: Annotated[Any, AfterValidator(_extends)] = None


class FamilySchema(BaseModel):
    """recipes/families/<name>.yaml: what a model family fixes, so a recipe only names it."""

    model_config = ConfigDict(strict=True, extra="forbid")
    description: str
    template: Text  # the Jinja model template (recipes/templates/)
    chat_template: Text  # Axolotl's chat_template name (a recipe's vars.chat_template may override it)
    end_of_turn: Text  # the token that ends an assistant turn (trained, and a stop token when serving)
    pad_token: Text
    requires_alternating: bool  # the chat template raises on two user (or assistant) turns in a row
    supports_tools: bool = False  # the chat template renders tools, tool calls and tool results
    tokenizer_stand_in: Literal[tuple(SHAPES)] | None = None
    model_types: list[Text]  # config.json model_type values of this family's models
    hub_names: list[Text] = []  # lower-case parts of a hub id that name this family (qwen2.5, mistral)


SECTIONS = {"data": DataSchema, "vars": VarsSchema}
# --set values of these keys stay the text typed: a system prompt "42" or a base model "1e-4" is not a number.
TEXT_KEYS = frozenset(f"{section}.{name}" for section, schema in SECTIONS.items()
                      for name, spec in schema.model_fields.items() if spec.annotation in (str, str | None))
# Of those, the keys that may be null: `--set data.system_prompt=null` is null, not the text "null".
NULLABLE_TEXT_KEYS = frozenset(f"{section}.{name}" for section, schema in SECTIONS.items()
                               for name, spec in schema.model_fields.items() if spec.annotation == str | None)

_MESSAGES = {
    "greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}", "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}", "int_type": "must be an integer", "float_type": "must be a number",
    "bool_type": "must be true or false", "string_type": "must be a string", "finite_number": "must be finite",
    "literal_error": "must be one of {expected}", "list_type": "must be a list", "dict_type": "must be a mapping",
    "model_type": "must be a mapping", "string_too_short": "must not be empty", "too_short": "must have {min_length} items",
    "too_long": "must have {max_length} items", "string_unicode": "must be valid Unicode text",
}


def did_you_mean(word, known) -> str:
    """' (did you mean 'lora_r'?)' when a known name is close to word, else ''."""
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _problem(error: dict, schema: type[BaseModel]) -> str:
    """One pydantic error as `vars.lora_r: must be > 0, got -5`."""
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    where = ".".join(loc) or "(top level)"
    if error["loc"][-1:] == ("[key]",) and error["type"] == "literal_error":
        return f"{'.'.join(loc[:-1]) or '(top level)'}: unknown name {error['input']!r}; known: {error['ctx']['expected']}"
    if error["loc"][-1:] == ("[key]",) or error["type"] == "invalid_key":
        return f"{'.'.join(loc[:-1]) or '(top level)'}: key {error['input']!r}: must be a string"
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        owner = SECTIONS.get(loc[0], schema) if len(loc) > 1 else schema
        return f"{where}: unknown key{did_you_mean(loc[-1], owner.model_fields)}; known: {', '.join(owner.model_fields)}"
    if kind == "value_error":
        return f"{where}: {error['ctx']['error']}"
    if kind == "missing":
        return f"{where}: missing"
    bounds = {name: int(v) if isinstance(v, float) and v.is_integer() else v for name, v in error.get("ctx", {}).items()}
    message = _MESSAGES.get(kind, error["msg"]).format(**bounds)
    if kind == "float_type" and isinstance(value, str) and value.strip().lower().lstrip("+-")[:1].isdigit():
        message += " (YAML reads 2e-4 as text: write 2.0e-4 or 0.0002)"
    return f"{where}: {message}, got {_shown(value)}"


def known_bars(task: str) -> list[str]:
    """Bar names `ftr eval` (or `ftr judge`) checks for a recipe of this task: a metric path it measures
    (`per_class.false.recall`, `judge.overall`: a lower bound) or `<path>_max` (an upper bound)."""
    measured = tasks.measured(task)
    return [*measured, *(f"{name}_max" for name in measured)]


def bar_problems(bars: dict, task: str) -> list[str]:
    """A bar no evaluation measures would pass unchecked forever: one problem line per such name."""
    known = known_bars(task)
    lower = [name for name in known if not name.endswith("_max")]
    problems = []
    for name in bars:
        if name in known:
            continue
        bound = "_max" if name.endswith("_max") else ""
        renamed = RENAMED_BARS.get(name.removesuffix("_max") if bound else name)
        if renamed:
            problems.append(f"bars.{name}: bars are metric paths now: write {renamed + bound!r}")
        else:
            problems.append(f"bars.{name}: not a metric `ftr eval` measures for task {task!r}"
                            f"{did_you_mean(name, known)}; known: {', '.join(lower)} (or <path>_max for an upper "
                            "bound)")
    return problems


def task_problem(task: str, data_format: str) -> str | None:
    """A task trains on its own record shapes only: rephrase on rephrase records, chat on every other format."""
    fits = tasks.of_format(data_format).NAME
    if fits == task:
        return None
    formats = tasks.get(task).FORMATS
    needs = f"trains on data.format {' or '.join(formats)}, not {data_format!r}" if formats else \
        f"does not train on data.format {data_format!r} (task {fits}'s records)"
    return f"task {task!r} {needs}: set task: {fits} (or point data.path and data.format at {task} data)"


def file_problems(raw: dict, schema: type[BaseModel]) -> list[str]:
    """The problems of one file's own keys and values against its schema (RecipeFileSchema for a recipe file,
    FamilySchema for a family), one line each; [] when it has none."""
    try:
        schema.model_validate(raw)
    except ValidationError as exc:
        return [_problem(error, schema) for error in exc.errors()]
    return []


def value_problem(key: str, value) -> str | None:
    """The problem with one override ("lora_r", "data.seed", "family", "axolotl.KEY") as `must be > 0, got -5`,
    or None. An axolotl.KEY's value is Axolotl's to check (validate_yaml)."""
    if key == "family":
        return None if isinstance(value, str) and value else f"must be a family name, got {_shown(value)}"
    if key == "task":
        return None if value in tasks.TASKS else f"must be one of {', '.join(tasks.TASKS)}, got {_shown(value)}"
    if key.startswith("axolotl."):
        name = key.split(".", 1)[1]
        return None if AXOLOTL_KEY.match(name) else "an Axolotl key is a name of letters, digits and _"
    section, name = key.split(".", 1) if key.startswith("data.") else ("vars", key)
    try:
        SECTIONS[section].model_validate({name: value})
    except ValidationError as exc:
        return "; ".join(_problem(error, SECTIONS[section]).split(": ", 1)[1] for error in exc.errors())
    return None


@dataclass
class Validation:
    changed: dict = field(default_factory=dict)   # key -> (ours, Axolotl's)
    warnings: list[str] = field(default_factory=list)  # Axolotl's warnings and its notes on values it set


class _Collect(logging.Handler):
    """Keeps warnings, and the notes Axolotl's schema logs when it adjusts a config value."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        if record.levelno >= logging.WARNING or record.name.startswith("axolotl.utils.schemas"):
            self.messages.append(record.getMessage())


def axolotl_key_names(config: dict) -> set[str]:
    """Every top-level key Axolotl's schema knows for this config: its fields, their aliases and, when the config
    names plugins, theirs (as validate_config merges them). Axolotl itself drops an unknown key without a word."""
    from axolotl.cli.config import prepare_plugins
    from axolotl.utils import config as axolotl_config
    from axolotl.utils.dict import DictDefault

    schemas = [axolotl_config.AxolotlInputConfigBase]
    if config.get("plugins"):
        from axolotl.integrations.base import PluginManager

        try:
            prepare_plugins(DictDefault(dict(config)))
            # only the plugins this config names: Axolotl's plugin manager keeps every plugin loaded in the process
            registered = PluginManager.get_instance().plugins
            for path in filter(None, (registered[name].get_input_args() for name in config["plugins"])):
                module, _, cls = path.rpartition(".")
                schemas.append(getattr(importlib.import_module(module), cls))
        except Exception as exc:  # a plugin named in the config that does not import
            raise ValueError(str(exc)) from None
    names = set()
    for schema in schemas:
        for name, spec in schema.model_fields.items():
            names |= {name, spec.alias, spec.validation_alias if isinstance(spec.validation_alias, str) else None}
    return names - {None}


def unknown_axolotl_keys(config: dict, keys=None) -> list[str]:
    """One problem line per key of `keys` (default: all of config's) that Axolotl's schema does not know."""
    known = axolotl_key_names(config)
    return [f"{key}: not a key Axolotl's schema knows, so Axolotl would drop it unread{did_you_mean(key, known)}"
            for key in (config if keys is None else keys) if key not in known]


def validate_yaml(text: str) -> Validation:
    """Validate Axolotl YAML text; raises ValueError with Axolotl's (or YAML's) message when the config is invalid."""
    try:
        ours = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    if not isinstance(ours, dict):
        raise ValueError(f"an Axolotl config is a mapping of keys, got {type(ours).__name__}")

    from axolotl.cli.config import prepare_plugins
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    try:
        prepare_plugins(DictDefault(dict(ours)))  # plugin schemas (e.g. Liger's keys) join the validation
    except Exception as exc:  # a plugin named in the config that does not import
        raise ValueError(str(exc)) from None
    unknown = unknown_axolotl_keys(ours)
    if unknown:
        raise ValueError("\n".join(unknown))
    collector = _Collect()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        checked = validate_config(DictDefault(dict(ours)))
    except Exception as exc:  # pydantic ValidationError and Axolotl's own ValueErrors
        raise ValueError(str(exc)) from None
    finally:
        root.removeHandler(collector)
    result = Validation(warnings=collector.messages)
    for key, value in ours.items():
        if key in ("datasets", "test_datasets"):
            continue
        after = checked.get(key)
        if value is not None and after != value:
            result.changed[key] = (value, after)
    return result
