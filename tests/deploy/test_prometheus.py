"""The Prometheus scrape configs and rules (deploy/prometheus/): every metric and label they read is exported, the
alerts have runbooks and sample series, and promtool (Debian's `prometheus` package; scripts/test installs it)
checks and unit-tests the rules.
"""

from __future__ import annotations

import re

from tests.deploy.manifests import (
    EMBEDDER,
    ERROR_CODES,
    JOBS,
    OPERATIONS_DOC,
    PROMETHEUS,
    RULES_FILE,
    RULES_TEST_FILE,
    SERVERS,
    alerts,
    check_query,
    compose_settings,
    container_ports,
    dashboard,
    k8s_settings,
    known_series,
    label_matchers,
    pod_labels,
    rules,
    run_promtool,
    workload,
    yaml_docs,
)


def test_every_metric_the_rules_query_is_exported_with_those_labels(exported):
    known = known_series(exported)
    for rule in rules():
        check_query(rule["expr"], known, rule.get("record") or rule.get("alert"))


def test_error_rates_count_exactly_the_server_side_codes():
    for rule in rules():
        for matcher in label_matchers(rule["expr"]):
            if matcher.label == "code" and matcher.op == "=~":
                assert set(matcher.value.split("|")) == ERROR_CODES, rule.get("record") or rule.get("alert")


def test_queue_saturation_threshold_is_eighty_percent_of_the_configured_queue():
    limits = {k8s_settings(EMBEDDER).max_queue_size, compose_settings(EMBEDDER).max_queue_size}
    assert len(limits) == 1
    threshold = int(0.8 * limits.pop())
    (alert,) = [a for a in alerts() if a["alert"] == "SearchgwEmbedderQueueSaturated"]
    assert re.search(rf"searchgw_embedder_queue_depth\)\s*>\s*{threshold}\b", alert["expr"])
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == "Queue depth"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == threshold


def test_the_scrape_configs_name_the_jobs_the_rules_use():
    used = set()
    for rule in rules():
        for matcher in label_matchers(rule["expr"]):
            if matcher.label == "job":
                used |= set(matcher.value.split("|"))
    assert used == set(JOBS.values())
    # Kubernetes: job = searchgw-<component label>, keeping the container ports named `metrics`
    (config,) = yaml_docs(PROMETHEUS / "prometheus-kubernetes.yml")
    (job,) = config["scrape_configs"]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    assert relabel[("__meta_kubernetes_pod_container_port_name",)]["regex"] == "metrics"
    component = relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)]
    assert component["target_label"] == "job"
    for server in SERVERS:
        value = pod_labels(workload(server))["app.kubernetes.io/component"]
        assert component["replacement"].replace("$1", value) == JOBS[server.name]
        assert "metrics" in container_ports(server)
    assert config["rule_files"] == ["rules/searchgw.rules.yml"]


MAIN_ALERTS = {"SearchgwCanaryErrorRateAbovePrimary", "SearchgwRolloutRolledBack", "SearchgwRolloutStuckInconclusive",
               "SearchgwEmbedderQueueSaturated", "SearchgwSearchLatencyHigh", "SearchgwEmbedderLatencyHigh",
               "SearchgwInstanceDown", "SearchgwNotReady", "SearchgwDependencyDown"}


def test_alerts_are_labelled_annotated_and_have_a_runbook_section():
    headings = {line[4:].strip() for line in OPERATIONS_DOC.read_text().splitlines() if line.startswith("### ")}
    names = {a["alert"] for a in alerts()}
    assert names == MAIN_ALERTS
    for alert in alerts():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"])
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{alert['alert'].lower()}"
        assert alert["alert"] in headings, f"docs/operations.md has no section for {alert['alert']}"


def test_every_alert_has_sample_series_where_it_fires_and_where_it_does_not():
    (suite,) = yaml_docs(RULES_TEST_FILE)
    assert suite["rule_files"] == [RULES_FILE.name]
    fires, quiet = set(), set()
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", ()):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == MAIN_ALERTS
    assert quiet == MAIN_ALERTS


def test_promtool_accepts_the_rules_and_the_compose_scrape_config():
    run_promtool("check", "rules", str(RULES_FILE))
    # the Debian build of promtool has no Kubernetes discovery: prometheus-kubernetes.yml is checked above
    run_promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_promtool_rule_tests_pass():
    result = run_promtool("test", "rules", str(RULES_TEST_FILE))
    assert "SUCCESS" in result.stdout
