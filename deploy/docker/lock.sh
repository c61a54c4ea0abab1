#!/usr/bin/env bash
# Regenerate the serving image's lock files from pyproject.toml, with uv (pip install uv; it is in [dev]):
#
#   deploy/docker/lock.sh            # after changing a dependency of [serve], [s3], [gpu], [otlp] or [otlp-grpc]
#
# One lock per image flavour, named for its EXTRAS with commas as dashes (the Dockerfile picks it the same way):
# every package, transitive ones included, pinned with its hashes, for CPython 3.11+ on Linux (x86_64 and
# aarch64; --universal keeps per-platform markers). The image installs exactly these with --require-hashes
# --no-deps, so two builds of one commit get the same bytes. tests/deploy/test_image_lock.py fails when a lock no
# longer satisfies pyproject.
set -euo pipefail
cd "$(dirname "$0")/../.."

FLAVOURS=("serve,s3,otlp,otlp-grpc" "serve,s3,gpu,otlp,otlp-grpc")
for extras in "${FLAVOURS[@]}"; do
  lock="deploy/docker/locks/${extras//,/-}.txt"
  python3 deploy/docker/requirements.py pyproject.toml "$extras" \
    | uv pip compile - --quiet --universal --python-version 3.11 --generate-hashes --no-header \
        --index-url "${UV_INDEX_URL:-https://pypi.org/simple}" --output-file "$lock"
  sed -i "1i # EXTRAS=$extras, by deploy/docker/lock.sh (uv pip compile --universal --generate-hashes)" "$lock"
  echo "$lock: $(grep -c '==' "$lock") packages"
done
