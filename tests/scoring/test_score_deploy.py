"""The batch manifests: the Job validates against the Kubernetes schemas, and both run flags `pixelserve score`
really accepts."""

from __future__ import annotations

import shlex

import pytest
import yaml

from pixelserve.service.scoring.cli import EXIT_SOME_INPUTS_FAILED, EXIT_USAGE, ScoreSettings
from tests.scoring.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"


def score_argv(command: str) -> list[str]:
    """The arguments after `pixelserve score` in a shell command line."""
    words = shlex.split(command.split(";")[0])
    assert words[:2] == ["pixelserve", "score"]
    return words[2:]


def test_batch_job_validates_and_runs_a_valid_score_command() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    (job,) = yaml.safe_load_all((K8S / "batch-job.yaml").read_text())
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = ScoreSettings.from_cli(score_argv(container["args"][0]))
    assert args.output.endswith(".jsonl")  # the serving image has no pyarrow
    assert f'"$rc" -eq {EXIT_SOME_INPUTS_FAILED} ] && exit 0' in container["args"][0]
    (fail_fast, _) = job["spec"]["podFailurePolicy"]["rules"]
    assert fail_fast["onExitCodes"]["values"] == [EXIT_USAGE]


def test_rayjob_entrypoint_is_a_valid_ray_engine_command() -> None:
    (ray_job,) = yaml.safe_load_all((K8S / "rayjob.yaml").read_text())
    args = ScoreSettings.from_cli(score_argv(ray_job["spec"]["entrypoint"]))
    assert args.engine == "ray"
    workers = ray_job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert all(w["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1 for w in workers)
