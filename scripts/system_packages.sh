#!/usr/bin/env bash
# System packages the slow test suites need, installed from Debian's packages only when missing:
# - chromium: the browser test drives the Dagster UI in Debian's chromium (Playwright's own
#   browser download does not work here);
# - redis-server, iproute2, util-linux: the distributed tests start a Redis broker and put each
#   Celery worker in its own network namespace (ip, unshare).
# Used by .ci/run and by the README's test command.
set -euo pipefail
if [ -x /usr/bin/chromium ] && command -v redis-server >/dev/null && command -v ip >/dev/null \
        && command -v unshare >/dev/null; then
    exit 0
fi
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq chromium redis-server iproute2 util-linux >/dev/null
