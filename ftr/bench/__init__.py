"""ftr.bench: every benchmark of the repository, each writing its figures into docs/BENCHMARKS.md and a JSON file
under docs/benchmarks/. A leaf: it imports the rest of ftr, nothing imports it (Axolotl loads the plugin by name).

- train: `make bench` = `python -m ftr.bench` (also `python -m ftr.bench.train`): GPU training throughput of
  qwen-rephrase against the seed setup and Axolotl's defaults, a leave-one-out ablation of its speed levers, QLoRA
  at mistral-stories' shape, and data-preparation time (`--prep-only` needs no GPU) -> docs/benchmarks/train-gpu.json.
  train_setups holds the configs and the arithmetic (throughput, MFU, losses); train_report the tables and docs.
- multi: `make bench-multi` = `python -m ftr.bench.multi`: (c)'s tokens/s/GPU and per-GPU efficiency at 1/2/4/8
  GPUs with ddp, zero2 and fsdp2, through ftr.train's own launcher -> docs/benchmarks/train-multi-gpu.json.
- plugin: the Axolotl plugin (`ftr.bench.plugin.BenchPlugin`) that train adds to every benchmarked config to record
  per-step wall time and token counts.
- eval: `python -m ftr.bench.eval --model DIR --data ROWS.jsonl`: `ftr eval`'s batched greedy generation against
  the seeds' one-at-a-time sampling loop, same model and prompts -> docs/benchmarks/eval-gpu.json.
- convert: `python -m ftr.bench.convert [--rows 100000]`: `ftr lint` + `ftr convert` speed and peak memory on a
  generated rephrase file (CPU) -> docs/benchmarks/convert-cpu.json; `--prep-rows 2000 20000`: `python -m ftr.prep`
  end to end, per phase.
"""
