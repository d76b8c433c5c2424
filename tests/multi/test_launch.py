"""The launch command and environment ftr builds for each ACCEL, and the accelerate configs themselves (no training)."""

import json
from pathlib import Path

import click
import pytest
import yaml

from ftr import train
from ftr.paths import ACCELERATE_DIR, REPO_ROOT

CONFIG = Path("/runs/x/axolotl.yaml")


@pytest.fixture
def gpus(monkeypatch):
    """gpus(n): pretend n CUDA GPUs are visible (0: a CPU-only host)."""
    return lambda n: monkeypatch.setattr(train, "gpu_count", lambda: n)


def test_cpu_ddp_runs_gloo_ranks_on_the_cpu(gpus):
    gpus(0)
    cmd = train.accelerate_command("ddp", CONFIG, 2)
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    at = cmd.index("axolotl.cli.train")
    assert cmd[at - 1:at + 2] == ["-m", "axolotl.cli.train", str(CONFIG)]
    memory = [arg for arg in cmd if arg.startswith("--max_memory=")]
    assert len(memory) == 1 and yaml.safe_load(memory[0].split("=", 1)[1]).keys() == {"cpu"}
    assert train.launch_env("ddp", {"A": "1"}) == {"A": "1", "ACCELERATE_USE_CPU": "true"}


def test_gpu_ddp_defaults_to_every_gpu_and_changes_nothing_else(gpus):
    gpus(4)
    cmd = train.accelerate_command("ddp", CONFIG, None)
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert not [arg for arg in cmd if arg.startswith("--max_memory")]
    assert train.launch_env("ddp", {"A": "1"}) == {"A": "1"}
    assert train.launch_env("single", {"A": "1"}) == {"A": "1"}
    assert "--num_processes" not in train.accelerate_command("single", CONFIG, None)


@pytest.mark.parametrize("visible, accel, processes, says", [
    (0, "ddp", None, "--num-processes N"),        # no GPU to count
    (0, "fsdp2", 2, "--accel ddp --num-processes 2"),
    (0, "zero3", 2, "--accel ddp --num-processes 2"),
    (1, "ddp", None, "at least 2 processes"),     # one GPU: DDP of one is --accel single
    (2, "single", 2, "--accel single runs one process"),
    (2, "ddp", 0, "at least 1"),
    (2, "nope", None, "unknown ACCEL 'nope'"),
])
def test_launches_that_cannot_work_are_refused_before_anything_runs(gpus, visible, accel, processes, says):
    gpus(visible)
    with pytest.raises(click.ClickException) as caught:
        train.accelerate_command(accel, CONFIG, processes)
    assert says in caught.value.format_message()


def test_zero_without_deepspeed_says_how_to_install_it(gpus, monkeypatch):
    gpus(2)
    real = train.importlib.util.find_spec
    monkeypatch.setattr(train.importlib.util, "find_spec", lambda name: None if name == "deepspeed" else real(name))
    with pytest.raises(click.ClickException) as caught:
        train.accelerate_command("zero2", CONFIG, None)
    assert "pip install 'deepspeed>=0.18.6,<0.19'" in caught.value.format_message()
    assert "--num_processes" in train.accelerate_command("fsdp2", CONFIG, None)


@pytest.mark.parametrize("name, launcher", [("single", None), ("ddp", "multi_gpu"), ("zero2", "use_deepspeed"),
                                            ("zero3", "use_deepspeed"), ("fsdp2", "use_fsdp")])
def test_accelerate_configs_parse_and_pick_their_launcher(name, launcher):
    """accelerate's own loader (unknown keys are an error) and launch-argument check, as `accelerate launch` runs
    them; no process starts."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = ACCELERATE_DIR / f"{name}.yaml"
    processes = ["--num_processes", "2"] if launcher else []
    args = launch_command_parser().parse_args(["--config_file", str(path), *processes, "-m", "axolotl.cli.train",
                                               str(CONFIG)])
    args, defaults, precision_from_file = _validate_launch_command(args)
    for flag in ("multi_gpu", "use_deepspeed", "use_fsdp"):
        assert bool(getattr(args, flag)) == (flag == launcher), flag
    # precision is the Axolotl YAML's (bf16/fp16), never accelerate's
    assert defaults.mixed_precision == (None if launcher == "use_deepspeed" else "no")
    if launcher == "use_deepspeed":
        # accelerate passes a mixed_precision set in this file on to DeepSpeedPlugin, which then refuses to start
        # beside a deepspeed_config_file ("the following accelerate config variables will be ignored"): H200, Axolotl 0.19
        assert not precision_from_file
    raw = yaml.safe_load(path.read_text())
    if launcher == "use_deepspeed":
        ds_file = REPO_ROOT / raw["deepspeed_config"]["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text())
        assert ds["zero_optimization"]["stage"] == int(name[-1])
        for key in ("offload_optimizer", "offload_param"):  # no CPU offload: it would make these configs slow
            assert (ds["zero_optimization"].get(key) or {}).get("device", "none") == "none"
        assert raw["deepspeed_config"]["zero3_init_flag"] == (name == "zero3")
    if launcher == "use_fsdp":
        fsdp = raw["fsdp_config"]
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_offload_params"] is False


@pytest.mark.parametrize("recipe", ["qwen-rephrase", "tiny-rephrase"])
def test_rendered_yaml_passes_axolotl_validation_as_every_accel_trains_it(recipe):
    """The accel changes only the launcher: every config trains the same rendered YAML, which Axolotl must accept."""
    from ftr.recipes import load_recipe, render
    from ftr.validate import validate_yaml

    validate_yaml(render(load_recipe(recipe)))  # raises ValueError with Axolotl's message when it refuses
    checked = validate_yaml(train.with_accel_keys(render(load_recipe(recipe)), "fsdp2"))
    assert checked.changed["fsdp_config"][1]["state_dict_type"] == "SHARDED_STATE_DICT"


def test_fsdp_keys_in_the_axolotl_yaml_come_from_the_accelerate_config():
    """Axolotl saves the trained FSDP model from its own fsdp_config (unset, its final save fails: H200, 0.19), so the
    run's axolotl.yaml carries the launcher's FSDP settings; the other ACCELs add nothing."""
    launcher = yaml.safe_load((ACCELERATE_DIR / "fsdp2.yaml").read_text())["fsdp_config"]
    keys = train.accel_axolotl_keys("fsdp2")
    assert keys["fsdp_version"] == launcher["fsdp_version"] == 2
    assert keys["fsdp_config"]["state_dict_type"] == launcher["fsdp_state_dict_type"]
    assert len(keys["fsdp_config"]) == len(launcher) - 1 and not any(k.startswith("fsdp_") for k in keys["fsdp_config"])
    for accel in ("single", "ddp", "zero2", "zero3"):
        assert train.accel_axolotl_keys(accel) == {} and train.with_accel_keys("a: 1\n", accel) == "a: 1\n"
    assert yaml.safe_load(train.with_accel_keys("a: 1\n", "fsdp2")) == {"a": 1, **keys}


def test_slurm_script_prepares_once_then_starts_one_launcher_per_node(tmp_path):
    """recipes/slurm/train.sbatch with stand-ins for SLURM, nvidia-smi, ftr and python: what it would run, per node."""
    import os
    import stat
    import subprocess

    def tool(path: Path, body: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    calls = tmp_path / "calls"
    tool(tmp_path / "bin/scontrol", 'printf "gpu-a\\ngpu-b\\n"\n')
    tool(tmp_path / "bin/nvidia-smi", 'echo "GPU 0"; echo "GPU 1"\n')
    # srun: run its command once per node, as SLURM would on each (SLURM_NODEID 0 and 1)
    tool(tmp_path / "bin/srun", 'shift; for n in 0 1; do SLURM_NODEID=$n "$@" || exit $?; done\n')
    tool(tmp_path / "repo/.venv/bin/ftr", f'echo "ftr $*" >> {calls}; echo /shared/build/r/runs/1/axolotl.yaml\n')
    tool(tmp_path / "repo/.venv/bin/python", f'echo "node $SLURM_NODEID: $*" >> {calls}\n')
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(tmp_path / "repo"),
               SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="gpu-[a-b]")
    env.pop("SLURM_GPUS_ON_NODE", None)
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes/slurm/train.sbatch"), "qwen-rephrase", "zero2",
                           "--set", "lora_r=8"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "ftr train qwen-rephrase --accel zero2 --prepare-only --num-processes 4 --set lora_r=8"
    launch = ("-m accelerate.commands.launch --config_file recipes/accelerate/zero2.yaml --num_machines 2 "
              "--machine_rank {} --num_processes 4 --main_process_ip gpu-a --main_process_port 29500 "
              "--rdzv_backend c10d -m axolotl.cli.train /shared/build/r/runs/1/axolotl.yaml")
    assert lines[1:] == [f"node 0: {launch.format(0)}", f"node 1: {launch.format(1)}"]
