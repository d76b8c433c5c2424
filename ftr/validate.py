"""Check a rendered Axolotl YAML with Axolotl's own schema (`axolotl.utils.config.validate_config`) on CPU.

No model or tokenizer is loaded: this is the pydantic validation Axolotl runs before training, so a recipe that
passes here fails later only for reasons that need the weights or the GPU.
"""

import logging
from dataclasses import dataclass, field

import yaml


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


def validate_yaml(text: str) -> Validation:
    """Validate Axolotl YAML text; raises ValueError with Axolotl's message when the config is invalid."""
    from axolotl.cli.config import prepare_plugins
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    ours = yaml.safe_load(text)
    prepare_plugins(DictDefault(dict(ours)))  # plugin schemas (e.g. Liger's keys) join the validation
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
