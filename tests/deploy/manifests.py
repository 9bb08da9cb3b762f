"""Loading deploy/ and what the code says it should agree with: helpers for the deploy tests (test_k8s.py,
test_compose.py, test_dockerfile.py, test_settings.py, test_prometheus.py, test_grafana.py, test_deploy_tree.py).

Nothing here can build or start a container; everything is read from the files and the code:
settings fields (`dataclasses.fields`), default ports, health service names (the generated
descriptors), exported metrics (the servers' own registries).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from searchgw import settings as settings_mod
from searchgw.embedder.metrics import EmbedderMetrics
from searchgw.embedder.settings import DEFAULT_METRICS_PORT as EMBEDDER_METRICS_PORT, DEFAULT_PORT as EMBEDDER_PORT
from searchgw.embedder.settings import ENV_PREFIX as EMBEDDER_ENV_PREFIX, EmbedderSettings
from searchgw.gateway.metrics import ROLLOUT_STATES, GatewayMetrics
from searchgw.gateway.routing.router import Arm
from searchgw.gateway.settings import DEFAULT_METRICS_PORT as GATEWAY_METRICS_PORT, DEFAULT_PORT as GATEWAY_PORT
from searchgw.gateway.settings import ENV_PREFIX as GATEWAY_ENV_PREFIX, GatewaySettings
from searchgw.v1 import collection_service_pb2, embed_service_pb2, rollout_service_pb2, search_service_pb2

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS = DEPLOY / "prometheus"
RULES_FILE = PROMETHEUS / "rules" / "searchgw.rules.yml"
RULES_TEST_FILE = PROMETHEUS / "rules" / "searchgw.rules.test.yml"
DASHBOARD_FILE = DEPLOY / "grafana" / "searchgw-dashboard.json"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"


# -- files ---------------------------------------------------------------------------------------
def yaml_docs(path: pathlib.Path) -> list[Any]:
    """The non-empty documents of a (multi-document) YAML file."""
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def deploy_files(*suffixes: str) -> list[pathlib.Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in suffixes)


def k8s_objects() -> list[dict]:
    """Every object of the Kustomize base (the kustomization itself excluded)."""
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml_docs(path):
            objects.append(doc)
    return objects


def k8s_index() -> dict[tuple[str, str], dict]:
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in k8s_objects()}


SINGLE_REPLICA = K8S / "single-replica"


def kustomization(directory: pathlib.Path) -> dict:
    (doc,) = yaml_docs(directory / "kustomization.yaml")
    return doc


def single_replica_objects() -> list[dict]:
    """The single-replica overlay rendered the way kustomize does for what it uses: the base's objects,
    minus those its `$patch: delete` patches name, with its other patches' `data`/`stringData`
    merged into the object they name, plus its own resources."""
    overlay = kustomization(SINGLE_REPLICA)
    deleted: set[tuple[str, str]] = set()
    merges: dict[tuple[str, str], dict] = {}
    for patch in overlay["patches"]:
        (doc,) = yaml_docs(SINGLE_REPLICA / patch["path"])
        key = (doc["kind"], doc["metadata"]["name"])
        if doc.get("$patch") == "delete":
            deleted.add(key)
        else:
            merges[key] = doc
    objects = []
    for resource in overlay["resources"]:
        if resource == "..":
            objects += [obj for obj in k8s_objects() if (obj["kind"], obj["metadata"]["name"]) not in deleted]
        else:
            objects += yaml_docs(SINGLE_REPLICA / resource)
    found = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert deleted.isdisjoint(found) and set(merges) <= found, "a patch names no object of the base"
    rendered = []
    for obj in objects:
        patch = merges.get((obj["kind"], obj["metadata"]["name"]))
        if patch:
            assert set(patch) <= {"apiVersion", "kind", "metadata", "data", "stringData"}, patch
            obj = {**obj, **{k: {**obj.get(k, {}), **patch[k]} for k in ("data", "stringData") if k in patch}}
        rendered.append(obj)
    return rendered


def settings_of(objects: list[dict], server: Server, workload_key: tuple[str, str]):
    """The settings `server`'s container gets from its ConfigMap and Secret among `objects`."""
    index = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    (only,) = [c for c in index[workload_key]["spec"]["template"]["spec"]["containers"] if c["name"] == server.name]
    env: dict[str, str] = {}
    for source in only.get("envFrom", ()):
        ref = source.get("configMapRef") or source.get("secretRef")
        obj = index[("ConfigMap" if "configMapRef" in source else "Secret", ref["name"])]
        env.update({**obj.get("data", {}), **obj.get("stringData", {})})
    return settings_mod.build(server.settings_cls, {}, env_prefix=server.env_prefix, environ=env)


def dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


# -- the code's side -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Server:
    """One of the two servers as the code defines it."""

    name: str  # "gateway" | "embedder"
    settings_cls: type
    env_prefix: str
    health_services: tuple[str, ...]

    def env_fields(self) -> dict[str, dataclasses.Field]:
        return {self.env_prefix + f.name.upper(): f for f in dataclasses.fields(self.settings_cls)}

    def default(self, field_name: str) -> Any:
        return {f.name: f.default for f in dataclasses.fields(self.settings_cls)}[field_name]


def _service_name(module, name: str) -> str:
    return module.DESCRIPTOR.services_by_name[name].full_name


GATEWAY = Server("gateway", GatewaySettings, GATEWAY_ENV_PREFIX, (
    _service_name(search_service_pb2, "SearchService"),
    _service_name(collection_service_pb2, "CollectionService"),
    _service_name(rollout_service_pb2, "RolloutService"),
))
EMBEDDER = Server("embedder", EmbedderSettings, EMBEDDER_ENV_PREFIX, (
    _service_name(embed_service_pb2, "EmbedService"),
))
SERVERS = (GATEWAY, EMBEDDER)


def server_for_env(name: str) -> Server | None:
    for server in SERVERS:
        if name.startswith(server.env_prefix):
            return server
    return None


def rpc_methods() -> dict[str, Any]:
    """'/package.Service/Method' -> method descriptor, for every RPC of the API."""
    methods = {}
    for module in (search_service_pb2, collection_service_pb2, rollout_service_pb2, embed_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods[f"/{service.full_name}/{method.name}"] = method
    return methods


@dataclass
class ExportedMetrics:
    """Sample names the servers export, and the label names each carries."""

    labels: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_servers(cls) -> ExportedMetrics:
        exported = cls()
        for metrics in (GatewayMetrics(), EmbedderMetrics()):
            # Label names per family, from the metric objects (a labelled family has no samples
            # until a child exists, so registry.collect() alone cannot tell them).
            family_labels = {}
            for value in vars(metrics).values():
                if isinstance(value, MetricWrapperBase):
                    family_labels[value._name] = frozenset(value._labelnames)
            for family in metrics.registry.collect():
                base = family_labels.get(family.name, frozenset())
                names = {family.name: base}
                if family.type == "counter":
                    names = {f"{family.name}_total": base, f"{family.name}_created": base}
                elif family.type == "histogram":
                    names = {f"{family.name}_bucket": base | {"le"}, f"{family.name}_sum": base,
                             f"{family.name}_count": base, f"{family.name}_created": base}
                for sample in family.samples:  # whatever the registry actually emits
                    names.setdefault(sample.name, frozenset(sample.labels))
                exported.labels.update(names)
        return exported


# -- PromQL, just enough to find metric names and label matchers ---------------------------------
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
             "offset", "bool", "inf", "nan", "atan2"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by values PromQL accepts."""
    replacements = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "${datasource}": "",
                    "$collection": ".*", "$rpc": "Search"}
    for variable, value in replacements.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric (or recorded series) names an expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group(0)
        if name in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue  # a keyword or a function call
        names.add(name)
    return names


def grouping_labels(expr: str) -> set[str]:
    labels = set()
    for match in _GROUPING.finditer(expr):
        labels |= {part.strip() for part in match.group(2).split(",") if part.strip()}
    return labels


@dataclass(frozen=True)
class Matcher:
    metric: str | None
    label: str
    op: str
    value: str


def label_matchers(expr: str) -> Iterator[Matcher]:
    for selector in _SELECTOR.finditer(expr):
        for matcher in _MATCHER.finditer(selector.group(2)):
            yield Matcher(selector.group(1), matcher.group(1), matcher.group(2), matcher.group(3))


# -- rules ---------------------------------------------------------------------------------------
def rules() -> list[dict]:
    return [rule for group in yaml_docs(RULES_FILE)[0]["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_labels() -> dict[str, frozenset[str]]:
    """Recorded series -> the labels they keep (their `by` clauses, else those of the series they use)."""
    recorded: dict[str, frozenset[str]] = {}
    for rule in rules():
        if "record" not in rule:
            continue
        labels = grouping_labels(rule["expr"]) - {"le"}
        if not labels:
            labels = set().union(*(recorded.get(name, frozenset()) for name in metric_names(rule["expr"])))
        recorded[rule["record"]] = frozenset(labels)
    return recorded


def dashboard_queries(board: dict | None = None) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and annotation queries."""
    board = board or dashboard()
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", ())]
    exprs += [a["expr"] for a in board["annotations"]["list"] if a.get("expr")]
    return exprs


def dashboard_variable_queries(board: dict | None = None) -> list[tuple[str, str]]:
    """(metric, label) of every `label_values(metric, label)` template variable."""
    board = board or dashboard()
    found = []
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        match = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*(\w+)\s*\)\s*", query or "")
        if match:
            found.append((match.group(1), match.group(2)))
    return found


# -- Dockerfile ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def dockerfile_instructions(path: pathlib.Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, numbered by stage."""
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stage = -1
    out = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def env_assignments(args: str) -> dict[str, str]:
    """KEY=VALUE pairs of an ENV instruction."""
    values = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        if sep:
            values[key] = value
    return values


def flag_values(server: Server, argv: Iterable[str]) -> dict[str, Any]:
    """Settings flags in a command line -> {field name: raw value} (booleans as True/False)."""
    fields = {("--" + f.name.replace("_", "-")): f for f in dataclasses.fields(server.settings_cls)}
    for f in dataclasses.fields(server.settings_cls):
        if f.metadata.get("flag"):
            fields[f.metadata["flag"]] = f
    values: dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            i += 1
            continue
        name, eq, inline = arg.partition("=")
        negated = name.startswith("--no-") and ("--" + name[5:]) in fields
        key = "--" + name[5:] if negated else name
        if key not in fields:
            raise AssertionError(f"{arg!r} is not a flag of {server.settings_cls.__name__}")
        f = fields[key]
        if f.type in (bool, "bool"):
            values[f.name] = not negated
            i += 1
        elif eq:
            values[f.name] = inline
            i += 1
        else:
            values[f.name] = args[i + 1]
            i += 2
    return values


# -- what the deploy tests share: names and lookups in the manifests, compose, promtool, query checks ----
WORKLOADS = {GATEWAY.name: ("Deployment", "searchgw-gateway"), EMBEDDER.name: ("Deployment", "searchgw-embedder")}
CONFIGMAPS = {GATEWAY.name: "searchgw-gateway-config", EMBEDDER.name: "searchgw-embedder-config"}
SECRET = "searchgw-gateway-secrets"
DEFAULT_PORTS = {GATEWAY.name: (GATEWAY_PORT, GATEWAY_METRICS_PORT), EMBEDDER.name: (EMBEDDER_PORT, EMBEDDER_METRICS_PORT)}
JOBS = {GATEWAY.name: "searchgw-gateway", EMBEDDER.name: "searchgw-embedder"}
ERROR_CODES = {"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "UNKNOWN"}


def workload(server: Server) -> dict:
    return k8s_index()[WORKLOADS[server.name]]


def pod_spec(server: Server) -> dict:
    return workload(server)["spec"]["template"]["spec"]


def container(server: Server) -> dict:
    (only,) = [c for c in pod_spec(server)["containers"] if c["name"] == server.name]
    return only


def container_ports(server: Server) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(server)["ports"]}


def configmap_env(server: Server) -> dict[str, str]:
    return dict(k8s_index()[("ConfigMap", CONFIGMAPS[server.name])]["data"])


def secret_env() -> dict[str, str]:
    secret = k8s_index()[("Secret", SECRET)]
    return {**secret.get("stringData", {}), **secret.get("data", {})}


def pod_env(server: Server) -> dict[str, str]:
    """What the server's container sees from its envFrom sources and env."""
    env: dict[str, str] = {}
    for source in container(server).get("envFrom", ()):
        if "configMapRef" in source:
            env.update(k8s_index()[("ConfigMap", source["configMapRef"]["name"])]["data"])
        if "secretRef" in source:
            assert source["secretRef"]["name"] == SECRET
            env.update(secret_env())
    for item in container(server).get("env", ()):
        env[item["name"]] = item.get("value", "")
    return env


def k8s_settings(server: Server):
    return settings_mod.build(server.settings_cls, {}, env_prefix=server.env_prefix, environ=pod_env(server))


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(text))
    assert match, f"{text!r} is not a duration"
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def pre_stop_sleep(server: Server) -> float:
    command = container(server)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0].endswith("sleep"), command
    return float(command[1])


def istio_proxy_config(server: Server) -> dict:
    annotations = workload(server)["spec"]["template"]["metadata"].get("annotations", {})
    return yaml.safe_load(annotations.get("proxy.istio.io/config", "")) or {}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"]["labels"]


def workloads() -> list[dict]:
    return [o for o in k8s_objects() if o["kind"] in ("Deployment", "StatefulSet")]


def compose() -> dict:
    (doc,) = yaml_docs(COMPOSE_FILE)
    return doc


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    # ${VAR:-default} interpolation, as compose does with VAR unset
    return {k: re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def compose_settings(server: Server):
    service = compose()["services"][server.name]
    command = service.get("command", [])
    values = flag_values(server, command)
    return settings_mod.build(server.settings_cls, values, env_prefix=server.env_prefix,
                              environ=compose_env(server.name))


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: it comes with Debian's `prometheus` package "
                    "(apt-get install -y prometheus; scripts/test installs it)", pytrace=False)
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def dockerfile_stages() -> dict[int, list]:
    stages: dict[int, list] = {}
    for instruction in dockerfile_instructions():
        if instruction.stage >= 0:  # ARGs before the first FROM belong to no stage
            stages.setdefault(instruction.stage, []).append(instruction)
    return stages


def dockerfile_runtime_env() -> dict[str, str]:
    last = max(dockerfile_stages())
    env: dict[str, str] = {}
    for instruction in dockerfile_stages()[last]:
        if instruction.keyword == "ENV":
            env.update(env_assignments(instruction.args))
    return env


def dockerfile_model_dir() -> str:
    (run,) = [i.args for i in dockerfile_instructions() if i.keyword == "RUN" and "default_model_dir" in i.args]
    match = re.search(r"default_model_dir\(pathlib\.Path\('([^']+)'\)\)", run)
    assert match, run
    return match.group(1)


def dockerfile_healthcheck_path() -> str:
    (run,) = [i.args for i in dockerfile_instructions() if i.keyword == "RUN" and "healthcheck.py" in i.args]
    return run.split()[-1]


def known_series(exported: ExportedMetrics) -> dict[str, frozenset[str]]:
    target_labels = frozenset({"job", "instance", "namespace", "pod"})
    known = {name: labels | target_labels for name, labels in exported.labels.items()}
    known["up"] = target_labels
    known.update(recorded_labels())
    return known


def label_values_allowed() -> dict[str, set[str]]:
    kinds = {v.name.removeprefix("KIND_").lower() for v in rollout_service_pb2.Decision.Kind.DESCRIPTOR.values}
    return {
        "code": {c.name for c in grpc.StatusCode},
        "arm": {a.value for a in Arm} | {"none"},
        "kind": kinds - {"unspecified"},
        "state": set(ROLLOUT_STATES),
        "job": set(JOBS.values()),
        "rpc": {path.rsplit("/", 1)[1] for path in rpc_methods()},
    }


def check_query(expr: str, known: dict[str, frozenset[str]], where: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: reads no metric: {expr}"
    for name in names:
        assert name in known, f"{where}: {name} is not exported by the servers nor recorded: {expr}"
    allowed_values = label_values_allowed()
    for matcher in label_matchers(expr):
        if matcher.metric:
            assert matcher.label in known[matcher.metric], f"{where}: {matcher.metric} has no label {matcher.label}"
        if matcher.label in allowed_values and "$" not in matcher.value and ".*" not in matcher.value:
            for value in matcher.value.split("|"):
                assert value in allowed_values[matcher.label], f"{where}: {matcher.label}={value!r} never occurs"
