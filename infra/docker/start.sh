#!/bin/sh
# Container entry point: apply database migrations, then serve.
#
# Variables of the architecture document are mapped onto the service's AME_ settings when those are
# not set themselves: MODEL_CACHE_DIR -> AME_MODELS__CACHE_DIR, HF_SPACES=true -> the t4 profile
# where llama.cpp was built for CUDA (LLAMA_BACKEND=cuda, set by Dockerfile.hf-spaces), else the cpu
# profile, PORT -> AME_PORT. PRELOAD_GGUF=true loads the default model once before the port opens, which
# checks that it works on this hardware and warms the page cache (the service loads it again on use).
set -eu

if [ -n "${MODEL_CACHE_DIR:-}" ] && [ -z "${AME_MODELS__CACHE_DIR:-}" ]; then
    export AME_MODELS__CACHE_DIR="$MODEL_CACHE_DIR"
fi
if [ "${HF_SPACES:-false}" = "true" ] && [ -z "${AME_MODELS__PROFILE:-}" ]; then
    if [ "${LLAMA_BACKEND:-cpu}" = "cuda" ]; then
        export AME_MODELS__PROFILE=t4
    else
        export AME_MODELS__PROFILE=cpu
    fi
fi
if [ -n "${PORT:-}" ] && [ -z "${AME_PORT:-}" ]; then
    export AME_PORT="$PORT"
fi

# This shell is the container's PID 1 until it execs the server, and PID 1 ignores signals it has no
# handler for: without one, `docker stop` during the migrations or the preload would wait for its
# timeout and kill. The steps before serving run in the background, and SIGTERM/SIGINT end them.
child=""
stop_step() {
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit 143
}
trap stop_step TERM INT
step() {  # COMMAND...: run it as a stoppable child; its exit status is the step's
    "$@" &
    child=$!
    status=0
    wait "$child" || status=$?
    child=""
    return "$status"
}

step ai-med-extract db upgrade

if [ "${PRELOAD_GGUF:-false}" = "true" ]; then
    default_model="$(python -c 'import json,os; print(json.load(open(os.environ.get("AME_MODELS__CONFIG_PATH","models_config.json")))["default_model"])')"
    step ai-med-extract models load "$default_model" >/dev/null || echo "preloading $default_model failed; it loads on first use" >&2
fi

trap - TERM INT  # the server handles them itself (graceful shutdown)

if [ "${AME_BOOTSTRAP_KEY:-false}" = "true" ]; then
    exec ai-med-extract serve --no-upgrade --bootstrap-key "$@"
fi
exec ai-med-extract serve --no-upgrade --no-bootstrap-key "$@"
