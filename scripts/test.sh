#!/usr/bin/env bash
# The test suite, as `make test` runs it: services first, then lint, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL for the server's tests (trust auth on 127.0.0.1:5432, database `test`).
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
# Debian's Chromium for the browser tests; never a browser download.
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

.venv/bin/ruff check .
# Two workers for two cores; each keeps torch to one thread. loadgroup keeps the tests of
# one xdist_group (the Ray tests, which share a Ray instance) on one worker.
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/pytest -n 2 --dist loadgroup -p no:cacheprovider "$@"
