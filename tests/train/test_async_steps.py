"""ftr.async_steps: transformers' nan/inf loss filter and Axolotl's token count done on the device, the same values
as theirs, the trainer wrapped once, the recipe's rendering; (GPU) none of it reads back from the GPU."""

from types import SimpleNamespace

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("axolotl")

from ftr import async_steps  # noqa: E402


def _trainer(global_step=3, last_logged=1, tr_loss=6.0, include_tkps=True):
    return SimpleNamespace(state=SimpleNamespace(global_step=global_step), _globalstep_last_logged=last_logged,
                           _tr_loss=torch.tensor(tr_loss), args=SimpleNamespace(include_tkps=include_tkps))


def test_a_non_finite_loss_is_replaced_by_the_windows_mean_as_transformers_does():
    trainer = _trainer()
    assert async_steps.finite_or_window_mean(trainer, torch.tensor(1.5)).item() == 1.5
    # transformers: tr_loss / (1 + global_step - globalstep_last_logged) = 6 / 3
    assert async_steps.finite_or_window_mean(trainer, torch.tensor(float("nan"))).item() == 2.0
    assert async_steps.finite_or_window_mean(trainer, torch.tensor(float("-inf"))).item() == 2.0
    assert async_steps.finite_or_window_mean(SimpleNamespace(), 0.5) == 0.5  # no tensors: left alone


def test_token_counts_match_axolotls_and_stay_tensors():
    trainer = _trainer()
    labels = torch.tensor([[-100, 5, 6, -100], [7, -100, -100, -100]])
    async_steps.count_tokens_on_device(trainer, {"labels": labels, "input_ids": labels.abs()})
    async_steps.count_tokens_on_device(trainer, {"input_ids": torch.ones(2, 3, dtype=torch.long)})
    tokens = trainer.state.tokens
    assert torch.is_tensor(tokens["trainable"]) and torch.is_tensor(tokens["total"])
    assert int(tokens["trainable"].item()) == 3 + 6 and int(tokens["total"].item()) == 8 + 6


def test_wrap_routes_the_trainers_calls_and_restores_include_tkps():
    seen = []
    trainer = _trainer()
    trainer.training_step = lambda model, inputs, n=None: torch.tensor(float("inf"))
    trainer.compute_loss = lambda model, inputs, *a, **k: seen.append(trainer.args.include_tkps) or torch.tensor(0.0)
    async_steps.wrap(trainer)
    first = trainer.compute_loss
    async_steps.wrap(trainer)
    assert trainer.compute_loss is first  # once
    model = SimpleNamespace(training=True)
    trainer.compute_loss(model, {"labels": torch.tensor([[1, -100]])})
    assert seen == [False] and trainer.args.include_tkps is True  # Axolotl's own .cpu() count skipped, flag restored
    assert int(trainer.state.tokens["trainable"].item()) == 1
    assert trainer.training_step(model, {}).item() == 2.0  # inf: the window's mean
    model.training = False
    trainer.compute_loss(model, {"labels": torch.tensor([[1, 2]])})
    assert seen == [False, True] and int(trainer.state.tokens["trainable"].item()) == 1  # eval: not counted


def test_the_plugin_turns_the_host_filter_off():
    assert async_steps.AsyncStepsPlugin().get_training_args(None) == {"logging_nan_inf_filter": False}


def test_recipes_render_the_plugin_and_non_blocking_copies_by_default():
    from ftr.recipes import load_recipe, render

    cfg = yaml.safe_load(render(load_recipe("qwen-rephrase")))
    assert "ftr.async_steps.AsyncStepsPlugin" in cfg["plugins"]
    assert cfg["accelerator_config"] == {"non_blocking": True}
    # no dataloader_* key: any one of them turns off Axolotl's defaults (a worker process, pinned memory, prefetch)
    assert not [key for key in cfg if key.startswith("dataloader_")]
    off = yaml.safe_load(render(load_recipe("qwen-rephrase", {"async_steps": False})))
    assert "ftr.async_steps.AsyncStepsPlugin" not in off["plugins"] and "accelerator_config" not in off


@pytest.mark.gpu
def test_nothing_reads_back_from_the_gpu():
    trainer = _trainer()
    trainer._tr_loss = trainer._tr_loss.cuda()
    labels = torch.tensor([[-100, 5, 6]], device="cuda")
    nan = torch.tensor(float("nan"), device="cuda")  # made before: a tensor from a Python number is a host copy
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = async_steps.finite_or_window_mean(trainer, nan)
        async_steps.count_tokens_on_device(trainer, {"labels": labels})
        async_steps.count_tokens_on_device(trainer, {"labels": labels})
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.item() == 2.0 and int(trainer.state.tokens["trainable"].item()) == 4


def test_axolotl_keeps_its_data_loader_defaults_for_every_recipe():
    """The batch copy is non-blocking only from pinned memory, and the batches are collated off the training process
    only with a worker: Axolotl gives both by default, and drops both if a config sets any dataloader_* key."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    from ftr.recipes import load_recipe, render

    # what axolotl.cli.config.gpu_capabilities() reports for one Hopper GPU (the defaults are set only with them)
    gpu = {"bf16": True, "fp8": True, "tf32": True, "n_gpu": 1, "compute_capability": "sm_90"}
    env = {"torch_version": torch.__version__.split("+")[0]}
    for recipe_id in ("qwen-rephrase", "mistral-stories", "tiny-rephrase"):
        checked = validate_config(DictDefault(yaml.safe_load(render(load_recipe(recipe_id)))), gpu, env)
        assert checked.dataloader_pin_memory is True and checked.dataloader_num_workers == 1, recipe_id
        assert checked.accelerator_config == {"non_blocking": True}, recipe_id
    with_key = yaml.safe_load(render(load_recipe("qwen-rephrase"))) | {"dataloader_pin_memory": True}
    checked = validate_config(DictDefault(with_key), gpu, env)
    assert not checked.dataloader_num_workers  # the trap the template avoids: one key set, no worker
