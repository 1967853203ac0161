"""One zip code through `dagster asset materialize` under each executor zip_etl offers
(ZIP_ETL_EXECUTOR), timed whole: the command a user runs, process start-up included.

    python scripts/executor_cost.py --zip-code 10016 --repeat 5

Uses the raw table already seeded (`zip-etl seed`). Prints min / median / max seconds per executor,
and the difference of the medians: the cost of running each step in a process of its own.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
parser = argparse.ArgumentParser()
parser.add_argument("--zip-code", default="10016")
parser.add_argument("--repeat", type=int, default=5)
args = parser.parse_args()

dagster = Path(sys.executable).parent / "dagster"
command = [str(dagster), "asset", "materialize", "-m", "zip_etl.definitions", "--select", "cleaned_companies",
           "--partition", args.zip_code]
seconds: dict[str, list[float]] = {"in_process": [], "multiprocess": []}
for _ in range(args.repeat):
    for executor, times in seconds.items():  # interleaved, so a change of machine load hits both
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "ZIP_ETL_EXECUTOR": executor})
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            sys.exit(f"{executor}: the run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
print(f"one zip code ({args.zip_code}) through `dagster asset materialize`, {args.repeat} runs each, "
      f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
print("| executor | min s | median s | max s |")
print("| --- | ---: | ---: | ---: |")
for executor, times in seconds.items():
    print(f"| {executor} | {min(times):.2f} | {statistics.median(times):.2f} | {max(times):.2f} |")
print(f"multiprocess - in_process (medians): {statistics.median(seconds['multiprocess']) - statistics.median(seconds['in_process']):+.2f} s")
