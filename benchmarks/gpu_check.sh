#!/usr/bin/env bash
# The GPU path of medmat in one script (issue: paper-level accuracy; docs/medical-matting.md).
#
#   bash benchmarks/gpu_check.sh [OUTPUT]          (default OUTPUT: results/gpu-check)
#
# On a machine with a CUDA GPU: installs medmat (unless it is importable already), runs the
# `paper` 4-fold Brain-growth cross-validation (bf16/fp16 autocast through train.precision=auto,
# folds in parallel where the GPU's memory allows), then the prediction throughput of fold 0 on
# the CPU and the GPU, and prints one table. Without a GPU it says so and runs the same steps as a
# smoke version on built-in phantoms (the `demo` network, 2 epochs), so the script itself is
# checked on any machine.
#
# Environment: PYTHON (default: .venv/bin/python when it exists, else python3), DATA (default:
# ../shared/data/medical-matting/brain_growth_alpha.zip), JOBS (folds at once; default: as many as
# fit in the GPU's memory at 8 GiB a fold, at most 4: an allowance, not a measurement; medmat
# does not record a fold's GPU memory, and 4 `paper` folds at once ran on an H200), SEEDS (space-separated training seeds, one whole cross-validation each; default "0":
# with several, the table adds their mean ± std, the form of every headline figure in the docs),
# SEED_JOBS (seeds' cross-validations at once; default on a GPU: as many as the 8-GiB fold
# allowance and the CPU cores, one per JOBS folds, allow; 1 without a GPU: a small GPU model does
# not fill an H200, so three seeds at once fit a device time in which one after another do not),
# SET (space-separated KEY=VALUE config overrides added to every cross-validation).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTPUT=${1:-results/gpu-check}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import medmat" 2>/dev/null; then
    echo "gpu_check: installing medmat into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
    if ! "$PYTHON" -m pip install --quiet -e .; then
        echo "gpu_check: pip could not install medmat (no package index here?): install its dependencies" \
             "and rerun with PYTHONPATH=$PWD" >&2
        exit 1
    fi
fi
# medmat importable from a checkout on PYTHONPATH does not mean its dependencies are there (a GPU
# machine's own PyTorch image, say): name every missing one now, not in a traceback mid-run.
MISSING=$("$PYTHON" - <<'EOF'
import importlib.metadata
import re
import tomllib

with open("pyproject.toml", "rb") as file:
    requirements = tomllib.load(file)["project"]["dependencies"]
missing = []
for requirement in requirements:
    name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        missing.append(name)
print(" ".join(missing))
EOF
)
if [[ -n "$MISSING" ]]; then
    echo "gpu_check: $PYTHON lacks medmat's dependencies: $MISSING (pip install them, or carry their wheels)" >&2
    exit 1
fi
mkdir -p "$OUTPUT"
CORES=$(nproc)

GPU_MEMORY_GIB=$("$PYTHON" - <<'EOF'
import torch
print(torch.cuda.get_device_properties(0).total_memory // 2**30 if torch.cuda.is_available() else 0)
EOF
)
if [[ "$GPU_MEMORY_GIB" -gt 0 ]]; then
    MODE=gpu
    DATA=${DATA:-../shared/data/medical-matting/brain_growth_alpha.zip}
    JOBS=${JOBS:-$(( GPU_MEMORY_GIB / 8 < 1 ? 1 : (GPU_MEMORY_GIB / 8 > 4 ? 4 : GPU_MEMORY_GIB / 8) ))}
    CONFIG=paper
    FOLD_SLOTS=$(( GPU_MEMORY_GIB / 8 < CORES ? GPU_MEMORY_GIB / 8 : CORES ))
    SEED_SLOTS=$(( FOLD_SLOTS / JOBS < 1 ? 1 : FOLD_SLOTS / JOBS ))
    SETTINGS=(--set train.device=cuda --set train.precision=auto --set train.progress=false)
    echo "gpu_check: CUDA GPU with ${GPU_MEMORY_GIB} GiB: the paper's 4-fold cross-validation, ${JOBS} folds at a time"
else
    MODE=smoke
    DATA=phantom:16
    JOBS=${JOBS:-2}
    CONFIG=demo
    SEED_SLOTS=1
    SETTINGS=(--set optim.epochs=2 --set eval.every=0 --set train.progress=false)
    echo "gpu_check: no CUDA GPU on this machine: running the smoke version (demo network, 16 phantoms, 2 epochs)"
fi

SEEDS=${SEEDS:-0}
SEED_JOBS=${SEED_JOBS:-$SEED_SLOTS}
SEED_COUNT=$(wc -w <<< "$SEEDS")
ACTIVE_SEEDS=$(( SEED_JOBS < SEED_COUNT ? SEED_JOBS : SEED_COUNT ))
# The CPU cores shared out among every fold process at once (crossval alone would give each seed's
# folds all of them and oversubscribe the cores with several seeds).
THREADS=$(( CORES / (JOBS * ACTIVE_SEEDS) < 1 ? 1 : CORES / (JOBS * ACTIVE_SEEDS) ))
SETTINGS+=(--set "train.num_threads=$THREADS")
EXTRA=()
for OVERRIDE in ${SET:-}; do EXTRA+=(--set "$OVERRIDE"); done
RUNS=()
NAMED_RUNS=()
RUNNING=()
finish_oldest() {  # wait for the oldest seed still running; stop the script if it failed
    local pid=${RUNNING[0]} seed=${RUNNING[1]}
    RUNNING=("${RUNNING[@]:2}")
    if ! wait "$pid"; then
        echo "gpu_check: the cross-validation of seed $seed failed: see $OUTPUT/crossval-s$seed.txt" >&2
        exit 1
    fi
}
for SEED in $SEEDS; do
    RUN="$OUTPUT/crossval-$CONFIG-s$SEED"
    RUNS+=("$RUN")
    NAMED_RUNS+=("seed $SEED=$RUN")
    echo "gpu_check: seed $SEED -> $RUN (${SEED_JOBS} seed(s) at a time)"
    # crossval_cost.py times the cross-validation and its peak memory (cost.json in the run folder).
    "$PYTHON" benchmarks/crossval_cost.py --config "$CONFIG" --run-dir "$RUN" --jobs "$JOBS" --resume \
        --set "data.dataset=$DATA" --set "seed=$SEED" "${SETTINGS[@]}" "${EXTRA[@]}" > "$OUTPUT/crossval-s$SEED.txt" 2>&1 &
    RUNNING+=("$!" "$SEED")
    if [[ $(( ${#RUNNING[@]} / 2 )) -ge "$SEED_JOBS" ]]; then finish_oldest; fi
done
while [[ ${#RUNNING[@]} -gt 0 ]]; do finish_oldest; done
"$PYTHON" benchmarks/predict_throughput.py --run "${RUNS[0]}/fold-0" --images 32 --batch-sizes 1,8 \
    --json "$OUTPUT/throughput.json" > "$OUTPUT/throughput.txt"

# The accuracy table, and with several seeds their mean ± std row, is compare_runs.py's.
MEAN=()
if [[ ${#RUNS[@]} -gt 1 ]]; then MEAN=(--mean "mean ± std over ${#RUNS[@]} seeds"); fi
"$PYTHON" benchmarks/compare_runs.py "${NAMED_RUNS[@]}" "${MEAN[@]}" --output "$OUTPUT/accuracy.md" > /dev/null

"$PYTHON" - "$MODE" "$OUTPUT" "$SEED_JOBS" "${RUNS[@]}" <<'EOF'
import json, sys
from pathlib import Path

mode, output, seed_jobs = sys.argv[1], Path(sys.argv[2]), min(int(sys.argv[3]), len(sys.argv[4:]))
runs = [Path(run) for run in sys.argv[4:]]
throughput = json.loads((output / "throughput.json").read_text())
lines = [f"# medmat GPU check ({mode})", "",
         "| seed run | CV wall | folds at a time | seeds at a time | peak memory per fold process |", "|---|---|---|---|---|"]
for run in runs:
    cost = json.loads((run / "cost.json").read_text())
    lines.append(f"| {run.name} | {cost['wall_minutes']:.1f} min | {cost['jobs']} | {seed_jobs} | "
                 f"{cost['peak_memory_mib']:.0f} MiB |")
lines += ["", "Table IV (region unknown) and Table V (whole image; GED, Dice and the rest: mean ± std over folds):", "",
          (output / "accuracy.md").read_text().rstrip()]
lines += ["", "| prediction (fold 0 of the first seed) | slices/s |", "|---|---|"]
for rate in throughput["rates"]:
    lines.append(f"| {rate['device']}, {rate['model']} {rate['size']}², {rate['samples']} samples, "
                 f"batch {rate['batch_size']} | {rate['slices_per_second']:.2f} |")
machine = throughput["machine"]
gpu = f", GPU {machine['cuda_device']}" if machine.get("cuda_device") else ", no GPU"
lines += ["", f"machine: {machine['machine']}, {machine['cpu_count']} cores{gpu}, torch {machine['torch']}"]
report = "\n".join(lines) + "\n"
(output / "gpu_check.md").write_text(report)
print(report)
EOF
