#!/usr/bin/env bash
# Build the service images without a Docker daemon or a registry, start them and check them.
#
# Base images are made here from Debian's packages (debootstrap), the images are built with buildah
# (vfs storage, chroot isolation, host network) and run with podman. See docs/deployment.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/build-images.sh [OPTIONS] [TARGET...]

Build the Docker images of ai-med-extract with buildah on base images made locally from Debian's
packages, start each one with podman and check it: /health/ready answers 200 and one text note
uploaded with an API key is processed to the end, and `podman stop` ends it with SIGTERM (no
SIGKILL after 10 s). Needs root (debootstrap, buildah, podman).
Repeatable: what exists already (tools, base images) is kept; the images are rebuilt.

Targets (default: cpu):
  cpu       Dockerfile: the CPU service image          -> localhost/ai-med-extract:latest
  spaces    Dockerfile.hf-spaces: the Hugging Face Space image, llama.cpp for the CPU (free Space
            hardware); with LLAMA_BACKEND=cuda on local CUDA bases from Debian's non-free
            nvidia-cuda-toolkit (long: llama.cpp's CUDA kernels compile in the image)
                                                       -> localhost/ai-med-extract-spaces:latest

Options:
  --no-smoke        build only; do not start the images
  --no-build        only start and check the images built before
  --no-wheelhouse   do not offer pip's cache of locally built wheels (llama-cpp-python and other
                    source-only packages then compile inside the build)
  --rebuild-base    make the base images again (new debootstrap)
  --clean           remove this script's images, containers, volumes and work directory, then exit
  --keep-build      keep the build stages' intermediate images (default: pruned after the build)
  -h, --help        show this help

Environment:
  AME_IMAGES_WORK   work directory (default /var/tmp/ai-med-extract-images): base root filesystems,
                    the wheelhouse, logs
  DEBIAN_MIRROR     Debian mirror for debootstrap (default: the first URI of the machine's
                    /etc/apt/sources.list.d/debian.sources, else http://deb.debian.org/debian)
  NICE              niceness of the builds (default 10)
  SMOKE_PORT        host port the smoke test's service listens on (default 17860; host network)
  SMOKE_TIMEOUT     seconds to wait for readiness and for the upload's job (default 600)
  LLAMA_BACKEND     llama.cpp backend of the spaces image: cpu (default) or cuda
  LLAMA_CUDA_ARCHS  CUDA architectures for LLAMA_BACKEND=cuda (default: the Dockerfile's, 75 = T4)

pip inside the builds gets the machine's own index settings (index-url, extra-index-url,
find-links from `pip config list` and PIP_* variables); local directories among them (file://
indexes, find-links folders) are bind-mounted read-only at the same path into every RUN step.
EOF
}

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${AME_IMAGES_WORK:-/var/tmp/ai-med-extract-images}"
NICE="${NICE:-10}"
SMOKE_PORT="${SMOKE_PORT:-17860}"
SMOKE_TIMEOUT="${SMOKE_TIMEOUT:-600}"
LLAMA_BACKEND="${LLAMA_BACKEND:-cpu}"
SUITE=bookworm
BASE_PYTHON=localhost/ame-base/python:3.11-bookworm
BASE_CUDA_DEVEL=localhost/ame-base/cuda:11.8-devel-bookworm
BASE_CUDA_RUNTIME=localhost/ame-base/cuda:11.8-runtime-bookworm
IMAGE_CPU=localhost/ai-med-extract:latest
IMAGE_SPACES=localhost/ai-med-extract-spaces:latest
BUILDAH=(buildah --storage-driver vfs)
PODMAN=(podman --storage-driver vfs)

smoke=1 build=1 wheelhouse=1 rebuild_base=0 clean=0 keep_build=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --no-smoke) smoke=0 ;;
        --no-build) build=0 ;;
        --no-wheelhouse) wheelhouse=0 ;;
        --rebuild-base) rebuild_base=1 ;;
        --clean) clean=1 ;;
        --keep-build) keep_build=1 ;;
        cpu|spaces) targets+=("$1") ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#targets[@]} -eq 0 ] && targets=(cpu)
case "$LLAMA_BACKEND" in cpu|cuda) ;; *) echo "LLAMA_BACKEND must be cpu or cuda" >&2; exit 2 ;; esac

# -- helpers -------------------------------------------------------------------------------------
say() { printf '\n== %s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
die() { echo "build-images: $*" >&2; exit 1; }
declare -a TIMINGS=()
phase_name="" phase_start=0
phase() { phase_end; phase_name="$1"; phase_start=$SECONDS; say "$1"; }
phase_end() {  # records how long the current phase took
    [ -n "$phase_name" ] && TIMINGS+=("$(printf '%6ss  %s' $((SECONDS - phase_start)) "$phase_name")")
    phase_name=""
}
report() {
    phase_end
    [ ${#TIMINGS[@]} -gt 0 ] && { say "timings"; printf '%s\n' "${TIMINGS[@]}"; }
    if command -v buildah >/dev/null; then
        say "disk"
        du -sh /var/lib/containers/storage "$WORK" 2>/dev/null || true
    fi
}
image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, buildah with chroot isolation, podman)"

if [ "$clean" -eq 1 ]; then
    say "removing the smoke containers, volumes, images and $WORK"
    if command -v podman >/dev/null; then
        "${PODMAN[@]}" rm -f -v ame-smoke-cpu ame-smoke-spaces >/dev/null 2>&1 || true
        "${PODMAN[@]}" volume rm -f ame-smoke-cpu-data ame-smoke-cpu-models ame-smoke-spaces-data >/dev/null 2>&1 || true
    fi
    if command -v buildah >/dev/null; then
        "${BUILDAH[@]}" rm --all >/dev/null || true
        for image in "$IMAGE_CPU" "$IMAGE_SPACES" "$BASE_CUDA_RUNTIME" "$BASE_CUDA_DEVEL" "$BASE_PYTHON"; do
            image_exists "$image" && run "${BUILDAH[@]}" rmi -f "$image" >/dev/null
        done
        run "${BUILDAH[@]}" rmi --prune >/dev/null || true
    fi
    run rm -rf "$WORK"
    exit 0
fi
trap report EXIT
mkdir -p "$WORK"

# -- 1. tools ------------------------------------------------------------------------------------
phase "tools: buildah, podman, debootstrap (Debian packages)"
"$ROOT/scripts/install-system-packages.sh" apt-packages-images.txt
buildah --version
podman --version

# -- 2. base images --------------------------------------------------------------------------------
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

debian_sources() {  # the machine's Debian sources when it has them, else the mirror's three suites
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cat /etc/apt/sources.list.d/debian.sources
    else
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n\n' \
            "$mirror" "$SUITE" "$SUITE" /usr/share/keyrings/debian-archive-keyring.gpg
        printf 'Types: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
            "${mirror%/debian}/debian-security" "$SUITE" /usr/share/keyrings/debian-archive-keyring.gpg
    fi
}

if [ "$rebuild_base" -eq 1 ] || ! image_exists "$BASE_PYTHON"; then
    phase "base image $BASE_PYTHON: debootstrap $SUITE (minbase) with python3.11, pip, venv"
    rootfs="$WORK/rootfs-python"
    run rm -rf "$rootfs"
    # What python:3.11-slim offers the Dockerfiles: python (3.11), pip, venv, CA certificates.
    run nice -n "$NICE" debootstrap --variant=minbase \
        --include=python3.11,python3.11-venv,python3-pip,python-is-python3,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
    rm -f "$rootfs/etc/apt/sources.list"
    debian_sources > "$rootfs/etc/apt/sources.list.d/debian.sources"
    run chroot "$rootfs" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq >/dev/null
        apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log'
    run tar -C "$rootfs" --numeric-owner -cf "$WORK/rootfs-python.tar" .
    image_exists "$BASE_PYTHON" && run "${BUILDAH[@]}" rmi -f "$BASE_PYTHON" >/dev/null
    ctr="$("${BUILDAH[@]}" from scratch)"
    run "${BUILDAH[@]}" add "$ctr" "$WORK/rootfs-python.tar" /
    run "${BUILDAH[@]}" config --os linux --arch amd64 --env LANG=C.UTF-8 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$ctr"
    run "${BUILDAH[@]}" commit --rm "$ctr" "$BASE_PYTHON"
    rm -rf "$rootfs" "$WORK/rootfs-python.tar"
else
    say "base image $BASE_PYTHON exists (--rebuild-base to make it again)"
fi

cuda_base() {  # IMAGE PACKAGES...: the python base with Debian's non-free CUDA packages added
    local image="$1"; shift
    if [ "$rebuild_base" -eq 0 ] && image_exists "$image"; then
        say "base image $image exists"; return
    fi
    phase "base image $image: $BASE_PYTHON + $*"
    local ctr
    ctr="$("${BUILDAH[@]}" from --pull=never "$BASE_PYTHON")"
    run "${BUILDAH[@]}" run --isolation chroot --network host "$ctr" -- /bin/sh -c "
        sed -i 's/^Components: main\$/Components: main contrib non-free non-free-firmware/' /etc/apt/sources.list.d/debian.sources
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* >/dev/null
        apt-get clean && rm -rf /var/lib/apt/lists/*"
    run "${BUILDAH[@]}" config --env NVIDIA_VISIBLE_DEVICES=all --env NVIDIA_DRIVER_CAPABILITIES=compute,utility "$ctr"
    image_exists "$image" && run "${BUILDAH[@]}" rmi -f "$image" >/dev/null
    run "${BUILDAH[@]}" commit --rm "$ctr" "$image"
}

# -- 3. pip settings and wheelhouse ------------------------------------------------------------------
phase "pip: the machine's index settings and a wheelhouse of locally built wheels"
pip_setting() {  # the value of a pip setting, from PIP_* variables first, then `pip config list`
    local name="$1" env_name value
    env_name="PIP_$(echo "$name" | tr 'a-z-' 'A-Z_')"
    value="${!env_name:-}"
    if [ -z "$value" ] && command -v python3 >/dev/null; then
        value="$(python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z:.]*\.${name}='\(.*\)'\$/\1/p" | tail -n1)"
    fi
    echo "$value"
}
index_url="$(pip_setting index-url)"
extra_index_url="$(pip_setting extra-index-url)"
find_links="$(pip_setting find-links)"
mounts=()
for location in $index_url $extra_index_url $find_links; do
    path="${location#file://}"
    # A file index's pages link to its files with relative paths (../../files/...): mount it whole.
    [ "$path" != "$location" ] && [ "$(basename "$path")" = simple ] && path="$(dirname "$path")"
    case "$path" in
        /*) [ -e "$path" ] && mounts+=(--volume "$path:$path:ro") ;;
    esac
done
# A proxy's own certificate authority (pip's cert setting) goes in beside the image's bundle.
cert="$(pip_setting cert)"
if [ -n "$cert" ] && [ -f "$cert" ]; then
    mounts+=(--volume "$cert:/usr/local/share/pip-build-ca.pem:ro")
fi
if [ "$wheelhouse" -eq 1 ]; then
    # Wheels pip built here from sdists (llama-cpp-python's takes minutes), at the lock's versions.
    rm -rf "$WORK/wheelhouse" && mkdir -p "$WORK/wheelhouse"
    cache="$(python3 -m pip cache dir 2>/dev/null || echo "$HOME/.cache/pip")"
    pins="$(sed -n 's/^\([A-Za-z0-9_.-]*\)==\([^ ;]*\).*/\1-\2/p' "$ROOT/requirements.txt" \
            | tr 'A-Z.-' 'a-z__' )"
    while IFS= read -r wheel; do
        name="$(basename "$wheel" | cut -d- -f1-2 | tr 'A-Z.-' 'a-z__')"
        if grep -qx "$name" <<<"$pins"; then cp "$wheel" "$WORK/wheelhouse/"; fi
    done < <(find "$cache/wheels" -name '*.whl' 2>/dev/null)
    ls "$WORK/wheelhouse"
    mounts+=(--volume "$WORK/wheelhouse:/wheelhouse:ro")
    find_links="${find_links:+$find_links }/wheelhouse"
fi
pip_args=()  # only the settings that are set (pip reads an empty PIP_INDEX_URL as a URL)
[ -n "$index_url" ] && pip_args+=(--build-arg "PIP_INDEX_URL=$index_url")
[ -n "$extra_index_url" ] && pip_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra_index_url")
[ -n "$find_links" ] && pip_args+=(--build-arg "PIP_FIND_LINKS=$find_links")
[ -n "$cert" ] && [ -f "$cert" ] && pip_args+=(--build-arg "PIP_CERT=/usr/local/share/pip-build-ca.pem")
printf '  index-url=%s\n  extra-index-url=%s\n  find-links=%s\n  cert=%s\n  mounts: %s\n' \
    "${index_url:-(PyPI)}" "${extra_index_url:-}" "${find_links:-}" "${cert:-}" "${mounts[*]:-}"

# -- 4. builds -------------------------------------------------------------------------------------
build() {  # DOCKERFILE IMAGE BUILD-ARGS...
    local dockerfile="$1" image="$2"; shift 2
    if [ "$build" -eq 0 ]; then
        image_exists "$image" || die "$image was never built (run without --no-build)"
        return
    fi
    phase "build $image from $dockerfile (buildah, vfs, chroot isolation)"
    run nice -n "$NICE" "${BUILDAH[@]}" bud --format docker --isolation chroot --network host --pull=never --layers=false \
        -f "$ROOT/$dockerfile" -t "$image" "${pip_args[@]}" "${mounts[@]}" "$@" "$ROOT" \
        2>&1 | tee "$WORK/build-$(basename "$image" | tr ':' '-').log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || die "building $image failed (log in $WORK)"
    "${BUILDAH[@]}" images "$image"
    if [ "$keep_build" -eq 0 ]; then  # the build stage's image: untagged, a full copy under vfs
        "${BUILDAH[@]}" rmi --prune >/dev/null || true
    fi
}

# -- 5. smoke test ---------------------------------------------------------------------------------
podman_run_flags() {
    local flags=(--network host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=8192:8192)
    # crun refuses a cgroup v1/v2 hybrid host; runc with cgroupfs copes with it.
    if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
        flags+=(--runtime runc)
    fi
    printf '%s\n' "${flags[@]}"
}

http() {  # METHOD PATH [curl args...] -> body on stdout, status in $WORK/status
    local method="$1" path="$2"; shift 2
    curl -sS -o "$WORK/body" -w '%{http_code}' -X "$method" "http://127.0.0.1:$SMOKE_PORT$path" "$@" \
        > "$WORK/status" || echo 000 > "$WORK/status"
    cat "$WORK/body" 2>/dev/null || true
}

smoke_test() {  # NAME IMAGE [extra podman run args...]
    local name="ame-smoke-$1" image="$2"; shift 2
    phase "smoke test $image: start, /health/ready, keys create, upload a note"
    "${PODMAN[@]}" rm -f -v "$name" >/dev/null 2>&1 || true
    "${PODMAN[@]}" volume rm -f "$name-data" "$name-models" >/dev/null 2>&1 || true
    local secret fernet flags
    secret="$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
    fernet="$(head -c 32 /dev/urandom | base64 | tr '/+' '_-' | tr -d '\n')"
    mapfile -t flags < <(podman_run_flags)
    run "${PODMAN[@]}" --cgroup-manager cgroupfs run -d --name "$name" "${flags[@]}" \
        --read-only --tmpfs /tmp -v "$name-data:/data" \
        -e AME_PORT="$SMOKE_PORT" -e AME_SECURITY__SECRET_KEY="$secret" -e AME_STORAGE__ENCRYPTION_KEY="$fernet" \
        -e AME_BOOTSTRAP_KEY=true "$@" "$image" >/dev/null
    local deadline=$((SECONDS + SMOKE_TIMEOUT)) status=000
    while [ $SECONDS -lt $deadline ]; do
        http GET /health/ready >/dev/null
        status="$(cat "$WORK/status")"
        [ "$status" = 200 ] && break
        if [ "$("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$name")" != true ]; then
            "${PODMAN[@]}" logs "$name" | tail -40
            die "$image: the service exited before it was ready"
        fi
        sleep 3
    done
    http GET /health/ready; echo
    [ "$status" = 200 ] || { "${PODMAN[@]}" logs "$name" | tail -40; die "$image: /health/ready answered $status"; }
    echo "/health/ready: 200 after $((SECONDS - phase_start))s"
    "${PODMAN[@]}" logs "$name" 2>&1 | grep -q 'an admin key was created' \
        || die "$image: no bootstrap admin key in the log"
    echo "bootstrap admin key printed in the log (not repeated here)"
    local key
    key="$("${PODMAN[@]}" exec "$name" ai-med-extract keys create --role clinician --name smoke 2>/dev/null \
           | sed -n 's/^key id [0-9]* (clinician): //p')"
    [ -n "$key" ] || die "$image: keys create printed no key"
    echo "keys create --role clinician: ok"
    printf '%s\n' "Progress note. Patient John Carter, DOB 03/14/1961, MRN 4471203." \
        "Seen for chest pain. Denies shortness of breath. BP 142/91, HR 88." \
        "Assessment: hypertension. Plan: start lisinopril 10 mg daily, recheck in 2 weeks." > "$WORK/note.txt"
    http POST /upload -H "X-API-Key: $key" -F "files=@$WORK/note.txt;type=text/plain"; echo
    [ "$(cat "$WORK/status")" = 202 ] || die "$image: POST /upload answered $(cat "$WORK/status")"
    local job job_status=""
    job="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job_id"])' "$WORK/body")"
    while [ $SECONDS -lt $deadline ]; do
        http GET "/job/$job" -H "X-API-Key: $key" >/dev/null
        job_status="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("status",""))' "$WORK/body" 2>/dev/null || true)"
        case "$job_status" in completed|failed|cancelled) break ;; esac
        sleep 2
    done
    python3 - "$WORK/body" <<'EOF'
import json, sys
job = json.load(open(sys.argv[1]))
result = job.get("result") or {}
print("job", job.get("job_id", "?"), "status", job.get("status"), "result parts:", sorted(result)[:12])
EOF
    [ "$job_status" = completed ] || { "${PODMAN[@]}" logs "$name" | tail -40; die "$image: the upload's job ended '$job_status'"; }
    python3 - "$WORK/body" "$WORK/note.txt" <<'EOF' || die "$image: the upload's result is not what the note gives"
import json, sys
[document] = json.load(open(sys.argv[1]))["result"]["documents"]
assert document["text"] == open(sys.argv[2]).read(), "the extracted text differs from the note"
assert "Carter" not in document["phi"]["text"], "the de-identified text still names the patient"
names = {m.get("name", m.get("text", "")).lower() for m in document["medical"]["medications"]}
assert "lisinopril" in names, f"medications found: {sorted(names)}"
print("result: text as sent, name removed from the de-identified copy, medications", sorted(names))
EOF
    echo "upload: job completed"
    # docker stop / podman stop: SIGTERM, then SIGKILL after 10 s. Exit code 137 is the SIGKILL.
    local stop_start=$SECONDS code
    run "${PODMAN[@]}" stop -t 10 "$name" >/dev/null
    code="$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$name")"
    echo "stop: exited $code after $((SECONDS - stop_start))s"
    [ "$code" != 137 ] || { "${PODMAN[@]}" logs "$name" | tail -20; die "$image: SIGTERM did not stop it within 10 s"; }
    run "${PODMAN[@]}" rm -f -v "$name" >/dev/null  # -v: also the image's anonymous /models volume
    "${PODMAN[@]}" volume rm -f "$name-data" >/dev/null 2>&1 || true
}

for target in "${targets[@]}"; do
    case "$target" in
        cpu)
            build Dockerfile "$IMAGE_CPU" --build-arg "PYTHON_IMAGE=$BASE_PYTHON"
            [ "$smoke" -eq 1 ] && smoke_test cpu "$IMAGE_CPU"
            ;;
        spaces)
            backend=(--build-arg "LLAMA_BACKEND=$LLAMA_BACKEND")
            if [ "$LLAMA_BACKEND" = cuda ]; then
                cuda_base "$BASE_CUDA_DEVEL" nvidia-cuda-toolkit python3.11-dev
                cuda_base "$BASE_CUDA_RUNTIME" libcudart11.0 libcublas11 libcublaslt11
                build_base="$BASE_CUDA_DEVEL" runtime_base="$BASE_CUDA_RUNTIME"
                [ -n "${LLAMA_CUDA_ARCHS:-}" ] && backend+=(--build-arg "CUDA_ARCHITECTURES=$LLAMA_CUDA_ARCHS")
            else
                build_base="$BASE_PYTHON" runtime_base="$BASE_PYTHON"
            fi
            # The hub is not reachable here: no model preloading into the image.
            build Dockerfile.hf-spaces "$IMAGE_SPACES" --build-arg "BUILD_IMAGE=$build_base" \
                --build-arg "RUNTIME_IMAGE=$runtime_base" --build-arg PRELOAD_GGUF=false "${backend[@]}"
            [ "$smoke" -eq 1 ] && smoke_test spaces "$IMAGE_SPACES" -e PRELOAD_GGUF=false
            ;;
    esac
done
say "done: ${targets[*]}"
