"""Inference on a trained run: load it (base + adapter, or the verified merged model), compare two models on
golden prompts (`ftr merge`), generate one request at a time and serve it over HTTP (`ftr serve`).

torch, transformers and fastapi are imported inside functions or by the modules that need them, never here.
"""
