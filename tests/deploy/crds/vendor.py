"""Regenerate the vendored CRD schemas in this folder from the projects' own CRD manifests.

    python -m tests.deploy.crds.vendor KSERVE_GIT_DIR KEDA_GIT_DIR

Each argument is a clone (or a bare git directory) of https://github.com/kserve/kserve and
https://github.com/kedacore/keda; the CRDs are read at that clone's HEAD with `git show`, so the commit written
into each file is exactly the one the schema came from. What is kept of each CRD: the served version's
openAPIV3Schema as it is, without its `description` texts (they are most of the size) and without `status` (a
manifest never sets it). Subtrees pixelserve's manifests do not use (the other frameworks' predictors, custom
containers, worker specs, affinity, transformer, explainer; the list is in each file's `note`) become objects that
accept anything, so those fields stay known but unchecked. Both projects are Apache-2.0; see README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
KSERVE = "https://github.com/kserve/kserve"
KEDA = "https://github.com/kedacore/keda"
PREDICTOR = ("spec", "predictor")
FRAMEWORKS = ("huggingface", "lightgbm", "onnx", "paddle", "pmml", "pytorch", "sklearn", "tensorflow", "triton")

# (repository, CRD path in it, subtrees to prune as property paths below spec)
SOURCES: dict[str, tuple[str, str, tuple[tuple[str, ...], ...]]] = {
    "inferenceservices.serving.kserve.io": (
        KSERVE,
        "config/crd/full/serving.kserve.io_inferenceservices.yaml",
        (
            ("spec", "explainer"),
            ("spec", "transformer"),
            ("spec", "canary"),
            *((*PREDICTOR, name) for name in (*FRAMEWORKS, "xgboost", "workerSpec", "containers", "initContainers")),
            *((*PREDICTOR, name) for name in ("affinity", "volumes")),
        ),
    ),
    "servingruntimes.serving.kserve.io": (
        KSERVE,
        "config/crd/full/serving.kserve.io_servingruntimes.yaml",
        (("spec", "workerSpec"), ("spec", "affinity")),
    ),
    "clusterservingruntimes.serving.kserve.io": (
        KSERVE,
        "config/crd/full/serving.kserve.io_clusterservingruntimes.yaml",
        (("spec", "workerSpec"), ("spec", "affinity")),
    ),
    "scaledobjects.keda.sh": (KEDA, "config/crd/bases/keda.sh_scaledobjects.yaml", ()),
}
PRUNED = {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "x-vendored": "pruned"}


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def prune(schema: dict[str, Any], path: tuple[str, ...]) -> None:
    node = schema
    for name in path[:-1]:
        node = node["properties"][name]
    if path[-1] in node.get("properties", {}):  # an older CRD may not have it
        node["properties"][path[-1]] = dict(PRUNED)


def vendor(name: str, git_dirs: dict[str, str]) -> Path:
    repo, path, pruned = SOURCES[name]
    git = ["git", "--git-dir", git_dirs[repo]]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    text = subprocess.run([*git, "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["kind"] == "CustomResourceDefinition" and crd["metadata"]["name"] == name, name
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema = without_descriptions(version["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    for subtree in pruned:
        prune(schema, subtree)
    out = {
        "source": {"repository": repo, "path": path, "commit": commit, "license": "Apache-2.0"},
        "note": "openAPIV3Schema of the CRD, descriptions and status removed"
        + (f"; pruned to accept anything: {', '.join('.'.join(p) for p in pruned)}" if pruned else ""),
        "group": crd["spec"]["group"],
        "kind": crd["spec"]["names"]["kind"],
        "scope": crd["spec"]["scope"],
        "version": version["name"],
        "openAPIV3Schema": schema,
    }
    target = HERE / f"{name}.json"
    target.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return target


def main(argv: list[str]) -> None:
    kserve, keda = argv
    for name in SOURCES:
        print(vendor(name, {KSERVE: kserve, KEDA: keda}))


if __name__ == "__main__":
    main(sys.argv[1:])
