"""Evaluation: score prediction files, generate and score a trained recipe, judge answers with an LLM.

- scoring is each task's (ftr.tasks: one module per task); evaluate and cli call ftr.tasks.score.
- rows: reading reference and prediction JSONL files and pairing them.
- generation: loading a trained run's model through ftr.inference (its base, dtype, chat template and stop
  tokens, as merge and serve take them), batched greedy generation, the seed-style loop, perplexity.
- overlap: the scored rows checked against the adapter's training rows (by a hash of each prompt).
- evaluate: `ftr eval`'s pipeline (split -> answers -> scores -> files under build/<id>/eval/).
- staging: outputs only when complete: PID-named temp folders (dead owners' cleaned up), atomic files.
- report: the recipe's bars checked, report.md and the PNG figures.
- judge: LLM-as-judge over any OpenAI-compatible endpoint with seed 004's rubric.
- cli: the `ftr score`, `ftr eval` and `ftr judge` click commands.
"""
