"""`ftr serve RECIPE`: serve a trained run over HTTP (FastAPI + uvicorn, 127.0.0.1 by default): OpenAI-compatible
/v1/models and /v1/chat/completions, /health, and /predict when the task offers it. MODEL=merged serves the verified
build/<id>/merged, MODEL=adapter the base with build/<id>/adapter on top. The HTTP pieces live in ftr/serving/;
the run, its dtype, tokenizer and stop tokens come from ftr.inference, as for eval and merge.

Every argument is checked (port range, API key, that host:port can be bound) before the model loads.
"""

import os
import time

import click


def api_key_or_fail(api_key_env: str | None, host: str, insecure_no_auth: bool) -> str | None:
    """The API key from the environment variable named `api_key_env`; beyond loopback one is required unless
    --insecure-no-auth says otherwise. The key itself is never echoed."""
    from ftr.serving.server import is_loopback

    if api_key_env is not None:
        if insecure_no_auth:
            raise click.UsageError("--api-key-env and --insecure-no-auth exclude each other")
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise click.UsageError(f"--api-key-env {api_key_env}: the environment variable {api_key_env} is "
                                   f"{'empty' if api_key_env in os.environ else 'not set'}")
        return key
    if not is_loopback(host):
        if not insecure_no_auth:
            raise click.UsageError(f"--host {host} listens beyond this machine: set an API key with --api-key-env "
                                   "NAME (clients send `Authorization: Bearer <key>`), or pass --insecure-no-auth")
        click.echo(f"WARNING: listening on {host} WITHOUT AUTHENTICATION (--insecure-no-auth): anyone who can "
                   "reach this port can use the model", err=True)
    return None


@click.command("serve")
@click.argument("recipe_id")
@click.option("--model", "kind", type=click.Choice(["merged", "adapter"]), default="merged", show_default=True,
              help="merged: build/<id>/merged (run `ftr merge` first); adapter: base + build/<id>/adapter.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; beyond loopback needs --api-key-env (or --insecure-no-auth).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--api-key-env", metavar="NAME",
              help="Require `Authorization: Bearer <key>` (all but /health), the key read from env var NAME.")
@click.option("--insecure-no-auth", is_flag=True, help="Allow a non-loopback --host without an API key.")
@click.option("--max-tokens", "max_tokens_cap", default=512, show_default=True, type=click.IntRange(1),
              help="Cap on tokens generated per request (and the default when a request sets none).")
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a request may wait for the model plus generate; past it: 504.")
@click.option("--max-queue", default=16, show_default=True, type=click.IntRange(0),
              help="Requests that may wait for the model while one generates; past it: 503 + Retry-After.")
@click.option("--header-timeout", "header_timeout_s", default=10.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds a connection has to send a complete request header (then again for its body); "
                   "slower ones are closed (408 for a body).")
@click.option("--max-connections", default=64, show_default=True, type=click.IntRange(1),
              help="Open connections served at once; a request on one more gets 503.")
@click.option("--max-request-bytes", default=256 * 1024, show_default=True, type=click.IntRange(1),
              help="Larger request bodies get 413.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def serve(recipe_id, kind, host, port, api_key_env, insecure_no_auth, max_tokens_cap, timeout_s, max_queue,
          header_timeout_s, max_connections, max_request_bytes, device):
    """Serve RECIPE_ID's merged model or adapter: OpenAI chat completions, /health, and /predict (rephrase)."""
    from ftr.recipes_cli import load_or_fail
    from ftr import inference
    from ftr.serving import server

    api_key = api_key_or_fail(api_key_env, host, insecure_no_auth)
    try:
        server.check_can_listen(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    recipe = load_or_fail(recipe_id)
    run = inference.Run.of(recipe_id)
    try:
        folder = run.merged if kind == "merged" else run.require_adapter()
        if kind == "merged":
            inference.check_merged(run)
        trained_dtype, _ = inference.run_training_dtype(run)
        base_model = run.base_model() if kind == "adapter" else None
        if base_model:
            inference.prefer_offline(base_model)
        start = time.monotonic()
        device = inference.pick_device(device)
        dtype, _ = inference.inference_dtype(trained_dtype, device)
        tokenizer = inference.load_tokenizer(folder)
    except inference.RunError as exc:
        raise click.ClickException(str(exc)) from None
    if kind == "merged":
        model = inference.load_model(folder, dtype, device)
    else:
        model = inference.load_adapter_model(base_model, folder, dtype, device)

    import uvicorn

    from ftr import tasks
    from ftr.serving.app import create_app
    from ftr.serving.engine import Engine

    engine = Engine(model, tokenizer, inference.stop_token_ids(tokenizer, model, end_of_turn=recipe.end_of_turn),
                    max_tokens_cap=max_tokens_cap,
                    timeout_s=timeout_s, context_length=inference.context_length(model))
    task = tasks.of(recipe)
    # /health is open to anyone who can connect: run-relative names only, no absolute paths.
    info = {"model_id": recipe_id, "recipe": recipe_id, "kind": kind, "folder": f"{recipe_id}/{folder.name}",
            "dtype": dtype, "device": device, "task": task.NAME, "data_format": recipe.data_format,
            "max_tokens_cap": max_tokens_cap, "timeout_s": timeout_s, "predict": task.PREDICT}
    app = create_app(engine, info, max_request_bytes=max_request_bytes, task=task,
                     system_prompt=recipe.system_prompt, max_queue=max_queue,
                     read_timeout_s=header_timeout_s, api_key=api_key)
    click.echo(f"{recipe_id}: {kind} model {folder} ({dtype} on {device}) loaded in "
               f"{time.monotonic() - start:.1f} s; http://{host}:{port}  POST /v1/chat/completions"
               f"{', /predict' if task.PREDICT else ''}  GET /v1/models, /health"
               f"{'  (API key required)' if api_key else ''}", err=True)
    uvicorn.Server(server.config(app, host, port, header_timeout_s=header_timeout_s,
                                 max_connections=max_connections)).run()
