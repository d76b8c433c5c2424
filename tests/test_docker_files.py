"""The image's inputs agree with the rest of the repo: docker/requirements.txt pins every dependency pyproject.toml
declares (a satisfying version), the Dockerfile's torch is the Makefile's, the build context leaves out the host's
venv and runs, and compose publishes only on loopback with pinned images. The image itself: docker/ci-image-test.sh."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "docker/requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"docker/requirements.txt: {line!r} is not pinned with =="
            found[canonicalize_name(name)] = version
    return found


def test_requirements_pin_every_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    locked = pins()
    problems = [f"{r}: pinned {locked.get(canonicalize_name(r.name))}" for r in declared
                if not r.specifier.contains(locked.get(canonicalize_name(r.name), "0.0.0.dev0"), prereleases=True)]
    assert not problems, "docker/requirements.txt is stale (make docker-pins): " + "; ".join(problems)
    # torch has its own layer and pins triton; ftr is the code layer
    assert not {"torch", "triton", "ftr"} & set(locked)


def test_dockerfile_torch_is_the_makefile_torch():
    makefile_torch = re.search(r"pip install -q torch==([\w.]+)", (ROOT / "Makefile").read_text()).group(1)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG TORCH_VERSION={makefile_torch}\n" in dockerfile
    assert "ARG BASE_IMAGE=nvidia/cuda:13.0" in dockerfile


def test_build_context_leaves_out_the_host_venv_and_runs():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "build", ".git", "wheelhouse"} <= ignored


def test_compose_publishes_on_loopback_and_pins_its_images():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is published beyond loopback"
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not a pinned tag"
    assert "--api-key-env" in compose["services"]["serve"]["command"]
