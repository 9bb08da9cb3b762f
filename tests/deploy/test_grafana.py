"""The Grafana dashboard (deploy/grafana/): every query reads exported metrics and labels, parses (promtool),
and shows what operators need.
"""

from __future__ import annotations

import yaml

from tests.deploy.manifests import (
    annotations,
    check_query,
    dashboard,
    dashboard_queries,
    dashboard_variable_queries,
    grafana_to_promql,
    known_series,
    run_promtool,
)


def test_every_metric_the_dashboard_queries_is_exported_with_those_labels(exported):
    known = known_series(exported)
    for expr in dashboard_queries():
        check_query(grafana_to_promql(expr), known, "dashboard")
    for metric, label in dashboard_variable_queries():
        assert label in known[metric], f"dashboard variable: {metric} has no label {label}"


def test_dashboard_shows_what_operators_need():
    board = dashboard()
    queries = " ".join(dashboard_queries(board))
    for name in ("searchgw_requests_total", "searchgw_request_duration_seconds_bucket",
                 "searchgw_rollout_weight_ratio", "searchgw_rollout_state", "searchgw_rollout_decisions_total",
                 "searchgw_rollout_analysis_requests", "searchgw_rollout_analysis_error_rate",
                 "searchgw_rollout_analysis_latency_seconds", "searchgw_embedder_batch_size_sum",
                 "searchgw_embedder_queue_depth", "searchgw_embedder_cache_hits_total",
                 "searchgw_embedder_cache_misses_total", "searchgw_embedder_texts_total"):
        assert name in queries, name
    for quantile in ("0.50", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (arm, le) (rate(searchgw_request_duration_seconds_bucket" in queries
    annotations = [a for a in board["annotations"]["list"] if a.get("expr")]
    assert any("searchgw_rollout_decisions_total" in a["expr"] for a in annotations)
    assert any("searchgw_rollout_state" in a["expr"] for a in annotations)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


def test_promtool_parses_every_dashboard_query(tmp_path):
    queries = dashboard_queries()
    check = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)} for i, expr in enumerate(queries)]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(check))
    result = run_promtool("check", "rules", str(path))
    assert f"{len(queries)} rules found" in result.stdout
