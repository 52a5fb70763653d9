"""deploy/observability: the alert rules and the dashboard parse, and every metric they name is
exported by a service of the running suite (its real /metrics, scraped)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "observability"
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((HERE / "alerts.yml").read_text())
    found = [rule for group in document["groups"] for rule in group["rules"]]
    assert all(group["name"] and group["rules"] for group in document["groups"])
    return found


def dashboard_expressions() -> list[str]:
    board = json.loads((HERE / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def metric_names(node: Any) -> set[str]:
    """Every metric a parsed PromQL expression selects."""
    kind = type(node).__name__
    if kind == "VectorSelector":
        return {node.name} if node.name else set()
    if kind == "MatrixSelector":
        return metric_names(node.vector_selector)
    names: set[str] = set()
    for attribute in ("lhs", "rhs", "expr", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, int | float | str):
            names |= metric_names(child)
    for argument in getattr(node, "args", None) or ():
        names |= metric_names(argument)
    return names


def named_metrics() -> set[str]:
    expressions = [rule["expr"] for rule in rules()] + dashboard_expressions()
    return set().union(*(metric_names(promql_parser.parse(e)) for e in expressions))


def test_rules_are_well_formed_alerts_with_valid_promql() -> None:
    found = rules()
    assert {rule["alert"] for rule in found} >= {
        "ConsumerLagGrowing",
        "OutboxNotPublishing",
        "DeadLetters",
        "High5xxRatio",
        "SlaBreaches",
    }
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert "for" not in rule or DURATION.match(rule["for"]), rule["alert"]
        promql_parser.parse(rule["expr"])  # raises on a syntax error
    for expression in dashboard_expressions():
        promql_parser.parse(expression)


def test_the_syntax_check_catches_a_broken_expression() -> None:
    with pytest.raises(Exception, match="parenthesis"):
        promql_parser.parse("sum(rate(http_requests_total[5m])")
    names = metric_names(promql_parser.parse('a_total > 1 and on (x) rate(b{c="d"}[5m])'))
    assert names == {"a_total", "b"}


def test_promtool_accepts_the_rules_and_the_config() -> None:
    """promtool, when built (`PROMTOOL=path` or on PATH): see deploy/observability/README."""
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not built here; the PromQL parser above checks the syntax")
    subprocess.run([promtool, "check", "rules", str(HERE / "alerts.yml")], check=True)
    subprocess.run([promtool, "check", "config", str(HERE / "prometheus.yml")], check=True)


def exported(text: str) -> set[str]:
    """Metric names a /metrics page exports, as PromQL names them (histogram series too)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind in {"histogram", "summary"}:
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
    return names


async def test_every_metric_the_rules_and_dashboard_name_is_exported(suite: Any) -> None:
    if not hasattr(suite, "services"):
        pytest.skip("a stack started elsewhere: its services' ports are not known here")
    available: set[str] = set()
    async with httpx.AsyncClient(timeout=10.0) as client:
        for service in suite.services:
            if service.name == "standin":
                continue
            response = await client.get(f"{service.url}/metrics")
            assert response.status_code == 200, service.name
            available |= exported(response.text)
    missing = named_metrics() - available
    assert not missing, f"named but exported by no service: {sorted(missing)}"
