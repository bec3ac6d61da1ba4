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
# fit in the GPU's memory at 20 GiB a fold, at most 4).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTPUT=${1:-results/gpu-check}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import medmat" 2>/dev/null; then
    echo "gpu_check: installing medmat into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
    "$PYTHON" -m pip install --quiet -e .
fi
mkdir -p "$OUTPUT"

GPU_MEMORY_GIB=$("$PYTHON" - <<'EOF'
import torch
print(torch.cuda.get_device_properties(0).total_memory // 2**30 if torch.cuda.is_available() else 0)
EOF
)
if [[ "$GPU_MEMORY_GIB" -gt 0 ]]; then
    MODE=gpu
    DATA=${DATA:-../shared/data/medical-matting/brain_growth_alpha.zip}
    JOBS=${JOBS:-$(( GPU_MEMORY_GIB / 20 < 1 ? 1 : (GPU_MEMORY_GIB / 20 > 4 ? 4 : GPU_MEMORY_GIB / 20) ))}
    CONFIG=paper
    SETTINGS=(--set train.device=cuda --set train.precision=auto --set train.progress=false)
    echo "gpu_check: CUDA GPU with ${GPU_MEMORY_GIB} GiB: the paper's 4-fold cross-validation, ${JOBS} folds at a time"
else
    MODE=smoke
    DATA=phantom:16
    JOBS=${JOBS:-2}
    CONFIG=demo
    SETTINGS=(--set optim.epochs=2 --set eval.every=0 --set train.progress=false)
    echo "gpu_check: no CUDA GPU on this machine: running the smoke version (demo network, 16 phantoms, 2 epochs)"
fi

RUN="$OUTPUT/crossval-$CONFIG"
# crossval_cost.py times the cross-validation and its peak memory (cost.json in the run folder).
"$PYTHON" benchmarks/crossval_cost.py --config "$CONFIG" --run-dir "$RUN" --jobs "$JOBS" --resume \
    --set "data.dataset=$DATA" "${SETTINGS[@]}" > "$OUTPUT/crossval.txt"
"$PYTHON" benchmarks/predict_throughput.py --run "$RUN/fold-0" --images 32 --batch-sizes 1,8 \
    --json "$OUTPUT/throughput.json" > "$OUTPUT/throughput.txt"

"$PYTHON" - "$MODE" "$RUN" "$OUTPUT" <<'EOF'
import json, sys
from pathlib import Path

mode, run, output = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
summary = json.loads((run / "summary.json").read_text())
cost = json.loads((run / "cost.json").read_text())
throughput = json.loads((output / "throughput.json").read_text())
iv = summary["table_iv"]["mean"]
table_v = summary["table_v"]
lines = [f"# medmat GPU check ({mode})", "",
         "| measure | value |", "|---|---|",
         f"| cross-validation wall time | {cost['wall_minutes']:.1f} min ({cost['jobs']} folds at a time) |",
         f"| peak memory per fold process | {cost['peak_memory_mib']:.0f} MiB |",
         f"| Table IV SAD / MSE / Grad / Conn ({summary['table_iv']['n']} cases) | "
         f"{iv['SAD']:.4f} / {iv['MSE']:.4f} / {iv['Grad']:.4f} / {iv['Conn']:.4f} |",
         f"| Table V GED / Dice (mean ± std over folds) | {table_v['fold_mean']['GED']:.4f} ± "
         f"{table_v['fold_std']['GED']:.4f} / {table_v['fold_mean']['Dice']:.4f} ± {table_v['fold_std']['Dice']:.4f} |"]
for rate in throughput["rates"]:
    lines.append(f"| prediction, {rate['device']}, {rate['model']} {rate['size']}², {rate['samples']} samples, "
                 f"batch {rate['batch_size']} | {rate['slices_per_second']:.2f} slices/s |")
machine = throughput["machine"]
gpu = f", GPU {machine['cuda_device']}" if machine.get("cuda_device") else ", no GPU"
lines += ["", f"machine: {machine['machine']}, {machine['cpu_count']} cores{gpu}, torch {machine['torch']}"]
report = "\n".join(lines) + "\n"
(output / "gpu_check.md").write_text(report)
print(report)
EOF
