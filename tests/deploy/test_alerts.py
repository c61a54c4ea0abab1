"""The Prometheus alert rules: valid for the real promtool, loaded by the shipped configuration, and firing
on drift (and only on drift that lasts), checked by promtool's rule unit tests on drift gauge series."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_config_and_rules_pass_promtool() -> None:
    checked = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout + checked.stderr
    rules = promtool("check", "rules", str(ALERTS))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def _unit_test(tmp_path: Path, series: list[dict], alerts: list[dict]) -> subprocess.CompletedProcess[str]:
    spec = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": alerts}],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(spec))
    return promtool("test", "rules", str(path))


def _psi(model: str, statistic: str, values: str) -> dict:
    return {"series": f'pixelserve_drift_psi{{model="{model}",version="1",statistic="{statistic}",instance="a"}}',
            "values": values}  # fmt: skip


SERIES = [
    _psi("steady", "pixels", "0.03x40"),  # in distribution all along
    _psi("shifted", "ood_score", "0.05x5 0.6x35"),  # foreign traffic from minute 5 on
    _psi("blip", "pixels", "0.05x5 0.9x5 0.05x30"),  # five minutes of odd traffic, then back
]


def _annotations(model: str, statistic: str, value: str) -> dict[str, str]:
    return {
        "summary": f"{model} v1: traffic has drifted ({statistic})",
        "description": f"The population stability index of {statistic} is {value} (over 0.25 for 15 minutes) "
        "against the test split the model was measured on. Check what clients send, and sample it with payload "
        "logging to retrain on.",
    }


def _significant(at: str, firing: list[tuple[str, str, str]]) -> dict:
    return {
        "eval_time": at,
        "alertname": "PixelserveDriftSignificant",
        "exp_alerts": [
            {
                "exp_labels": {"model": m, "version": "1", "statistic": s, "severity": "warning"},
                "exp_annotations": _annotations(m, s, v),
            }
            for m, s, v in firing
        ],
    }


def test_significant_drift_fires_after_fifteen_minutes_and_only_for_the_shifted_model(tmp_path: Path) -> None:
    alerts = [_significant("15m", []), _significant("25m", [("shifted", "ood_score", "0.60")])]
    result = _unit_test(tmp_path, SERIES, alerts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_test_would_catch_a_rule_that_fires_on_steady_traffic(tmp_path: Path) -> None:
    """The same harness fails when the expectation is wrong: the rule tests above can fail."""
    wrong = [_significant("25m", [("shifted", "ood_score", "0.60"), ("steady", "pixels", "0.03")])]
    result = _unit_test(tmp_path, SERIES, wrong)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_compose_and_the_image_ship_the_rules_next_to_the_config() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    assert "alerts.yml" in (PROMETHEUS / "Dockerfile").read_text()
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]


def _requests(model: str, code: str, values: str) -> dict:
    labels = f'model="{model}",version="1",task="classify",protocol="grpc",code="{code}",instance="a"'
    return {"series": f"pixelserve_requests_total{{{labels}}}", "values": values}


def _latency(model: str, per_bucket: dict[str, int]) -> list[dict]:
    """A histogram whose requests (100 a minute) fall in the given upper bounds (cumulative counts)."""
    return [{"series": f'pixelserve_request_duration_seconds_bucket{{model="{model}",le="{le}",instance="a"}}',
             "values": f"0+{count}x40"} for le, count in per_bucket.items()]  # fmt: skip


SLO_SERIES = [
    _requests("healthy", "OK", "0+1000x40"),
    _requests("healthy", "INVALID_ARGUMENT", "0+200x40"),  # the clients' mistakes are not the server's errors
    _requests("failing", "OK", "0+1000x40"),
    _requests("failing", "INTERNAL", "0+0x5 0+50x35"),  # from minute 5, about 5 % of requests fail
    _requests("crowded", "OK", "0+1000x40"),
    _requests("crowded", "RESOURCE_EXHAUSTED", "0+0x10 0+200x30"),  # from minute 10, 17 % refused as overload
    *_latency("healthy", {"0.05": 100, "0.1": 100, "0.5": 100, "1.0": 100, "+Inf": 100}),
    *_latency("slow", {"0.05": 10, "0.1": 50, "0.5": 90, "1.0": 96, "+Inf": 100}),  # p99 between 1 and +Inf
]


def _description(alert: str, model: str) -> str:
    """The rule's description for `model` (it only uses the model label): what promtool must render."""
    rules = [r for group in yaml.safe_load(ALERTS.read_text())["groups"] for r in group["rules"]]
    (rule,) = [r for r in rules if r.get("alert") == alert]  # recording rules have no alert name
    return rule["annotations"]["description"].replace("{{ $labels.model }}", model)


def _fires(alert: str, at: str, firing: dict[str, str], severity: str) -> dict:
    """`firing`: model -> the summary it must carry (its value worked out by hand from the series)."""
    return {"eval_time": at, "alertname": alert,
            "exp_alerts": [{"exp_labels": {"model": m, "severity": severity},
                            "exp_annotations": {"summary": summary, "description": _description(alert, m)}}
                           for m, summary in firing.items()]}  # fmt: skip


def test_slo_alerts_fire_for_server_errors_latency_and_overload_and_not_for_client_errors(tmp_path: Path) -> None:
    failing = {"failing": "failing: 4.762% of requests fail on the server side"}  # 50 of 1,050 a minute
    alerts = [
        _fires("PixelserveErrorRatioHigh", "12m", {}, "critical"),  # failing, but not yet for 10 minutes
        _fires("PixelserveErrorRatioHigh", "25m", failing, "critical"),
        # 96 of 100 within 1 s, the rest above: p99 is the last finite bound, 1 s
        _fires("PixelserveLatencyP99High", "25m", {"slow": "slow: p99 latency 1s"}, "warning"),
        # 200 of 1,200 a minute refused
        _fires(
            "PixelserveOverloaded", "25m", {"crowded": "crowded: 16.67% of requests refused as overload"}, "warning"
        ),
    ]
    result = _unit_test(tmp_path, SLO_SERIES, alerts)
    assert result.returncode == 0, result.stdout + result.stderr
    wrong = [_fires("PixelserveErrorRatioHigh", "25m", {**failing, "healthy": "healthy: 0%"}, "critical")]
    assert _unit_test(tmp_path, SLO_SERIES, wrong).returncode != 0  # the harness would catch a noisy rule


def _unit_test_rules(tmp_path: Path, series: list[dict], samples: list[dict], alerts: list[dict]) -> str:
    spec = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": samples,
                   "alert_rule_test": alerts}],
    }  # fmt: skip
    path = tmp_path / "fleet_test.yml"
    path.write_text(yaml.safe_dump(spec))
    result = promtool("test", "rules", str(path))
    return "" if result.returncode == 0 else result.stdout + result.stderr


def _fleet(model: str, replicas: int, per_minute: tuple[int, int]) -> list[dict]:
    """`replicas` pods sharing `per_minute` predictions of class 0 and 1 between them, and the 50/50 baseline."""
    series = []
    for pod in range(replicas):
        labels = f'model="{model}",version="1",statistic="predictions",instance="pod{pod}"'
        series += [{"series": f'pixelserve_drift_observations_total{{{labels},bin="{b}"}}',
                    "values": f"0+{count // replicas}x100"} for b, count in enumerate(per_minute)]  # fmt: skip
        answers = sum(per_minute) // replicas
        series += [{"series": f"pixelserve_drift_samples_total{{{labels}}}", "values": f"0+{answers}x100"},
                   *[{"series": f'pixelserve_drift_baseline_share{{{labels},bin="{b}"}}', "values": "0.5x100"}
                     for b in range(2)]]  # fmt: skip
    return series


def test_fleet_drift_gives_one_verdict_for_one_replica_and_for_four_sharing_the_same_traffic(tmp_path: Path) -> None:
    """80/20 predictions against a 50/50 baseline: PSI 0.3 ln 1.6 + 0.3 ln 2.5 = 0.4159 on one pod and on four."""
    series = [*_fleet("one", 1, (80, 20)), *_fleet("four", 4, (80, 20)), *_fleet("steady", 4, (48, 52))]
    psi = 0.3 * math.log(0.8 / 0.5) + (-0.3) * math.log(0.2 / 0.5)
    steady = 0.48 * 0 + (0.48 - 0.5) * math.log(0.48 / 0.5) + (0.52 - 0.5) * math.log(0.52 / 0.5)
    at = "80m"
    expected = [{"labels": f'pixelserve:drift_psi:1h{{model="{m}",statistic="predictions",version="1"}}', "value": v}
                for m, v in (("four", psi), ("one", psi), ("steady", steady))]  # fmt: skip
    samples = [{"expr": "pixelserve:drift_psi:1h", "eval_time": at, "exp_samples": expected}]
    alerts = [{"eval_time": at, "alertname": "PixelserveFleetDriftSignificant", "exp_alerts": [
        {"exp_labels": {"model": m, "version": "1", "statistic": "predictions", "severity": "warning"},
         "exp_annotations": {
             "summary": f"{m} v1: the fleet's traffic has drifted (predictions)",
             "description": "The population stability index of predictions over every replica's last hour of "
                            f"traffic is {psi:.2f} (over 0.25 for 15 minutes) against the test split the model "
                            "was measured on."}} for m in ("four", "one")]}]  # fmt: skip
    assert _unit_test_rules(tmp_path, series, samples, alerts) == ""
    wrong = [{"expr": "pixelserve:drift_psi:1h", "eval_time": at, "exp_samples": expected[:1]}]
    assert _unit_test_rules(tmp_path, series, wrong, []) != ""  # the harness would notice a missing verdict
