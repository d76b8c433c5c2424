"""`ftr serve`'s HTTP side: generate one request at a time and serve it over HTTP. Loading the run (base + adapter,
or the verified merged model), its dtype, tokenizer and stop tokens is ftr.inference's, shared with eval and merge.

- engine: one model, one request at a time under a lock with a deadline, streamed text cut at stop strings.
- schemas: the OpenAI chat-completion request and response shapes, and the error body every failure gets.
- guards: API key, request body limits, the bounded queue in front of the model.
- app: the FastAPI app (/v1/models, /v1/chat/completions, /predict, /health); server: uvicorn and listening checks.

torch, transformers and fastapi are imported inside functions or by the modules that need them, never here.
"""
