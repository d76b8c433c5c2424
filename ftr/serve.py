"""`ftr serve RECIPE`: serve a trained run over HTTP (FastAPI + uvicorn, 127.0.0.1 by default): OpenAI-compatible
/v1/models and /v1/chat/completions, /health, and /predict for rephrase recipes. MODEL=merged serves the verified
build/<id>/merged, MODEL=adapter the base with build/<id>/adapter on top. The pieces live in ftr/serving/.
"""

import time

import click


@click.command("serve")
@click.argument("recipe_id")
@click.option("--model", "kind", type=click.Choice(["merged", "adapter"]), default="merged", show_default=True,
              help="merged: build/<id>/merged (run `ftr merge` first); adapter: base + build/<id>/adapter.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (no auth: keep local).")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--max-tokens", "max_tokens_cap", default=512, show_default=True, type=click.IntRange(1),
              help="Cap on tokens generated per request (and the default when a request sets none).")
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a request may wait for the model plus generate; past it: 504.")
@click.option("--max-request-bytes", default=256 * 1024, show_default=True, type=click.IntRange(1),
              help="Larger request bodies get 413.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def serve(recipe_id, kind, host, port, max_tokens_cap, timeout_s, max_request_bytes, device):
    """Serve RECIPE_ID's merged model or adapter: OpenAI chat completions, /health, and /predict (rephrase)."""
    from ftr.recipes_cli import load_or_fail
    from ftr.serving import loading

    recipe = load_or_fail(recipe_id)
    run = loading.Run.of(recipe_id)
    try:
        folder = run.merged if kind == "merged" else run.require_adapter()
        if kind == "merged":
            loading.check_merged(run)
        trained_dtype, _ = loading.run_training_dtype(run)
        base_model = run.base_model() if kind == "adapter" else None
    except loading.RunError as exc:
        raise click.ClickException(str(exc)) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: this server has no authentication", err=True)
    if base_model:
        loading.prefer_offline(base_model)

    start = time.monotonic()
    device = loading.pick_device(device)
    dtype = loading.serving_dtype(trained_dtype, device)
    tokenizer = loading.load_tokenizer(folder)
    if kind == "merged":
        model = loading.load_merged_model(folder, dtype, device)
    else:
        model = loading.load_adapter_model(base_model, folder, dtype, device)

    import uvicorn

    from ftr.serving.app import create_app
    from ftr.serving.engine import Engine

    engine = Engine(model, tokenizer, loading.stop_token_ids(tokenizer, model), max_tokens_cap=max_tokens_cap,
                    timeout_s=timeout_s, context_length=loading.context_length(model))
    rephrase = recipe.data_format == "rephrase"
    info = {"model_id": recipe_id, "recipe": recipe_id, "kind": kind, "folder": str(folder), "dtype": dtype,
            "device": device, "data_format": recipe.data_format, "max_tokens_cap": max_tokens_cap,
            "timeout_s": timeout_s, "predict": rephrase}
    app = create_app(engine, info, max_request_bytes=max_request_bytes,
                     system_prompt=recipe.system_prompt if rephrase else None)
    click.echo(f"{recipe_id}: {kind} model {folder} ({dtype} on {device}) loaded in "
               f"{time.monotonic() - start:.1f} s; http://{host}:{port}  POST /v1/chat/completions"
               f"{', /predict' if rephrase else ''}  GET /v1/models, /health", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
