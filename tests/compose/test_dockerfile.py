"""The Dockerfile, read without Docker: a pinned slim base, a builder stage for wheels from the lock
file, a final stage without build tools, caches or wheels, running as an unprivileged user."""

from __future__ import annotations

import re

from tests.compose.composefile import ENGINES, REPO, dockerfile_instructions, final_stage, image_env, services

PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?")
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "python3-dev", "libxml2-dev", "libxmlsec1-dev", "git")


def instructions():
    return dockerfile_instructions()


def base_images() -> list[str]:
    arguments = {}
    for word, rest in instructions():
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            arguments[name] = value
    images = []
    for word, rest in instructions():
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], image))
    return images


def test_the_base_image_is_a_pinned_slim_python_3_11():
    images = base_images()
    assert len(images) >= 2, "a builder stage and a final stage"
    for image in images:
        assert PINNED_PYTHON.fullmatch(image), f"{image}: pin the full Python version of a slim image"


def test_the_builder_makes_wheels_from_the_lock_file():
    runs = [rest for word, rest in instructions()[: -len(final_stage(instructions()))] if word == "RUN"]
    assert any("pip wheel" in run and "-c requirements.lock" in run for run in runs), runs


def test_the_final_stage_installs_without_a_cache_and_keeps_no_wheels():
    final = final_stage(instructions())
    installs = [rest for word, rest in final if word == "RUN" and "pip install" in rest]
    assert installs, "the final stage installs the wheels"
    for run in installs:
        assert "--no-cache-dir" in run and "--no-index" in run, run
        assert "--mount=type=bind,from=builder" in run, "wheels come from a bind mount, not a COPY layer"
    assert not [rest for word, rest in final if word in ("COPY", "ADD") and "--from=builder" in rest]
    assert "PIP_NO_CACHE_DIR" not in image_env() or image_env()["PIP_NO_CACHE_DIR"] in ("1", "true", "off")


def test_no_build_tools_or_package_lists_in_the_final_stage():
    for word, rest in final_stage(instructions()):
        if word == "RUN":
            assert not any(re.search(rf"(^|\s){re.escape(tool)}(\s|$)", rest) for tool in BUILD_TOOLS), rest
            if "apt-get install" in rest:
                assert "rm -rf /var/lib/apt/lists" in rest, rest
        assert word != "ADD", "COPY, not ADD (no remote downloads or archive unpacking)"


def test_it_runs_as_an_unprivileged_user():
    users = [rest for word, rest in final_stage(instructions()) if word == "USER"]
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(i for i, (word, _) in enumerate(final_stage(instructions())) if word == "USER")
    assert all(word != "RUN" for word, _ in final_stage(instructions())[last_user:]), "nothing runs as root after USER"
    assert any(word == "RUN" and "useradd" in rest and user in rest for word, rest in final_stage(instructions()))


def test_the_image_has_the_config_the_services_read():
    env = image_env()
    copies = [rest.split() for word, rest in final_stage(instructions()) if word == "COPY"]
    assert ["config", "/app/config"] in copies
    assert env["BROKER_CONFIG"] == "/app/config/broker.yaml" and env["IDP_CONFIG"] == "/app/config/idp.yaml"
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_state_folders_exist_for_the_volumes():
    """Named volumes start as copies of the image's folder, with its owner: the folders must exist there."""
    run = " ".join(rest for word, rest in final_stage(instructions()) if word == "RUN")
    for name, service in services().items():
        if name in ENGINES:  # the official images of the engines have their own folders
            continue
        for target in [v.split(":")[1] for v in service.get("volumes", [])] + [service.get("working_dir", "")]:
            if target:
                assert target in run, f"{target} is not created (and owned) in the image"


def test_the_build_context_leaves_out_local_state():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "instance", "test-artifacts", "**/__pycache__"} <= ignored
