#!/usr/bin/env bash
# .ci/run in a fresh clone of this checkout's HEAD while `yes > /dev/null` burns every core: the check
# that CI holds on a loaded machine. The burners are stopped however the run ends.
#   bash scripts/ci_under_load.sh [burners]      # default: one per core
set -uo pipefail
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
burners="${1:-$(nproc)}"
clone="$(mktemp -d /tmp/ci-under-load-XXXXXX)"
git clone --quiet "$source_dir" "$clone"
git -C "$clone" checkout --quiet "$(git -C "$source_dir" rev-parse HEAD)"

pids=()
stop_burners() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done; }
trap stop_burners EXIT INT TERM
for _ in $(seq "$burners"); do yes > /dev/null & pids+=("$!"); done

echo "clone $clone at $(git -C "$clone" rev-parse --short HEAD); $burners burner(s): ${pids[*]}; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
started=$(date +%s)
(cd "$clone" && .ci/run)
status=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); .ci/run exit status $status after $(( $(date +%s) - started )) s"
exit $status
