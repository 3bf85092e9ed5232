#!/usr/bin/env bash
# One-shot GPU check: install the CUDA extra, run the device test subset, the demo and the
# throughput benchmark at GPU sizes, the reduced basis seed-minor (benchmarks/reduced.py), and
# write one JSON (seed·steps/s, fraction of the GPU's
# float32 matmul peak measured in the same run, compile times, wall times).
#
#   bash benchmarks/device_check.sh                      # on a machine with an NVIDIA GPU
#   bash benchmarks/device_check.sh --cuda cuda13 --out gpu.json
#   bash benchmarks/device_check.sh --dry-run            # on a CPU: same steps, tiny sizes,
#                                                        # no install (what the suite runs)
#
# Run it from the repository root (or anywhere: it changes there). Every step's output goes to
# <out>.d/ next to the JSON; the JSON says which steps passed.
set -uo pipefail

cd "$(dirname "$0")/.."
DRY=0
CUDA=cuda12
OUT=device-check.json
PY=${PYTHON:-python}
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --cuda) CUDA="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "device_check.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$CUDA" in cuda12|cuda13) ;; *) echo "--cuda must be cuda12 or cuda13, not '$CUDA'" >&2; exit 2 ;; esac
LOGS="$OUT.d"
mkdir -p "$LOGS" || { echo "cannot create $LOGS: pick another --out" >&2; exit 2; }
: > "$LOGS/steps.tsv" || exit 2

if [ "$DRY" = 0 ]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "no NVIDIA GPU here (nvidia-smi finds none); on a CPU run it with --dry-run" >&2
        exit 2
    fi
    nvidia-smi -L > "$LOGS/gpu.txt"
    # Sizes a GPU is for: m = n = 1024, r = 16, 4096 seeds, float32 (the issue's check).
    TP_ARGS=(--m 1024 --n 1024 --r 16 --seeds 4096 --steps 200 --numpy-seeds 4 --variants default)
    TEST_ARGS=(-m "not slow")
    DEMO_ARGS=()
    # The reduced basis, seed-minor on the GPU too (its fraction of the GPU's float32 peak).
    RED_ARGS=(--widths 1024,4096 --batches 8,64,256,1024)
else
    TP_ARGS=(--m 32 --n 32 --r 2 --seeds 8 --steps 5 --repeats 1 --variants default)
    TEST_ARGS=(-m "not slow" --collect-only)  # the subset exists; running it is the GPU's job
    DEMO_ARGS=(--seeds 8 --steps 20 --no-figures)
    RED_ARGS=(--width 48 --big-width 64 --steps 5 --dense-seeds 2 --reduced-seeds 32
              --widths 48,64 --million 64 --batches 8,64)
fi

# step NAME COMMAND...: run it, log its output, record status and wall seconds.
step() {
    local name="$1"; shift
    local t0 rc
    t0=$EPOCHREALTIME
    echo "== $name: $*"
    "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$t0" "$EPOCHREALTIME" >> "$LOGS/steps.tsv"
    if [ "$rc" = 0 ]; then echo "   ok"; else echo "   FAILED (exit $rc), see $LOGS/$name.log"; fi
}

if [ "$DRY" = 0 ]; then
    step install "$PY" -m pip install -q -e ".[$CUDA,test]"
fi
step backend "$PY" -c "import jax; print(jax.default_backend(), jax.devices())"
step tests "$PY" -m pytest -q -rs -p no:cacheprovider "${TEST_ARGS[@]}" \
    tests/test_montecarlo.py tests/test_stream.py tests/test_pairing.py \
    tests/test_spectral.py tests/test_reduced.py
step demo "$PY" -m hrp_theory.cli demo --quiet --out "$LOGS/demo" --json "$LOGS/demo.json" \
    "${DEMO_ARGS[@]}"
step throughput "$PY" benchmarks/throughput.py "${TP_ARGS[@]}" --json "$LOGS/throughput.json"
step reduced "$PY" benchmarks/reduced.py --seed-minor-here "${RED_ARGS[@]}" \
    --json "$LOGS/reduced.json"

"$PY" - "$OUT" "$LOGS" "$DRY" <<'EOF'
"""Gather the steps into one JSON (written atomically)."""
import json
import re
import sys
from pathlib import Path

from hrp_theory.results import write_json

out, logs, dry = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
steps = {}
for line in (logs / "steps.tsv").read_text().splitlines():
    name, rc, t0, t1 = line.split("\t")
    steps[name] = {"ok": rc == "0", "exit": int(rc), "wall_s": round(float(t1) - float(t0), 2)}
load = lambda name: json.loads((logs / name).read_text()) if (logs / name).exists() else None
tp = load("throughput.json")
red = load("reduced.json")
demo_log = (logs / "demo.log").read_text() if (logs / "demo.log").exists() else ""
demo_wall = re.search(r"wall time ([0-9.]+) s", demo_log)
backend = (logs / "backend.log").read_text().split()[0] if (logs / "backend.log").exists() else None
result = {
    "dry_run": dry,
    "backend": backend,
    "gpu": (logs / "gpu.txt").read_text().strip() if (logs / "gpu.txt").exists() else None,
    "steps": steps,
    "all_ok": all(s["ok"] for s in steps.values()),
    "seed_steps_per_s": tp and tp["jax_seed_steps_per_s"],
    "spectral_seed_steps_per_s": tp and tp["spectral_seed_steps_per_s"],
    "matmul_peak_gflops": tp and tp["matmul_peak_gflops"],
    "fraction_of_peak": tp and tp["fraction_of_peak"],
    "compile_s": tp and tp["compile_s"],
    "throughput_config": tp and {k: tp["config"][k] for k in ("m", "n", "r", "seeds", "steps")},
    "demo_run_s": float(demo_wall.group(1)) if demo_wall else None,
    "reduced_fraction_of_peak": red and red["roofline"]["fraction_of_peak"],
    "reduced_seed_minor_speedup": red and red.get("seed_minor_speedup"),
    "reduced_layout": red and red["layout"],
    "reduced_million_seeds_s": red and red["million_seeds_s"],
    "total_s": sum(s["wall_s"] for s in steps.values()),
}
write_json(out, result)
print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=1))
print(f"wrote {out} (step logs in {logs}/)")
sys.exit(0 if result["all_ok"] else 1)
EOF
