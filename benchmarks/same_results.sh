#!/usr/bin/env bash
# Behaviour unchanged: run the same documented jobs with the code of an earlier commit and with the
# working tree, and compare their results file by file (paths, timings and the command line aside).
#
#   benchmarks/same_results.sh BASE_REF [--lite-fold]      e.g. benchmarks/same_results.sh 53ad888 --lite-fold
#
# Jobs: the `make demo` training and evaluation (metrics.json, summary.md), a tiny "nig" run on the
# phantoms and its `medmat interact` tables, and with --lite-fold fold 0 of the `lite` config on
# Brain-growth (metrics.json, log.csv; about 20 minutes of one core). Training runs with one torch
# thread and prediction with torch's default (the core count) on both sides, so that the two codes
# do the same arithmetic in the same order (OMP_NUM_THREADS is left unset: the old code imported
# numba, which raised torch's thread count to the core count anyway).
set -euo pipefail
base_ref=${1:?usage: benchmarks/same_results.sh BASE_REF [--lite-fold]}
lite_fold=${2:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
shared=${MEDMAT_SHARED:-$repo/../shared}
work=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$work/base" >/dev/null 2>&1 || true' EXIT
git -C "$repo" worktree add --detach "$work/base" "$base_ref" >/dev/null

run_jobs() {  # $1: source tree, $2: output folder
    local tree=$1 out=$2
    local medmat=(env -u OMP_NUM_THREADS PYTHONPATH="$tree" "$python" -m medmat)
    local one=(--set train.num_threads=1 --set train.progress=false)
    (cd "$tree" &&
        "${medmat[@]}" train --config demo --run-dir "$out/demo" "${one[@]}" &&
        "${medmat[@]}" evaluate --run "$out/demo" --output "$out/evaluation" &&
        "${medmat[@]}" train --config medmat/configs/nig_medical_matting_lite.yaml --run-dir "$out/nig" "${one[@]}" \
            --data phantom:24 --set data.input_size=64 --set data.resize=64 --set optim.epochs=12 \
            --set optim.lr=1e-3 --set eval.every=12 &&
        "${medmat[@]}" interact --run "$out/nig" --simulate 2 --proposals 4 --output "$out/interact") >"$out.log" 2>&1
    if [[ $lite_fold == --lite-fold ]]; then
        (cd "$tree" && "${medmat[@]}" train --config lite --run-dir "$out/lite-fold0" --fold 0 "${one[@]}" \
            --data "$shared/data/medical-matting/brain_growth_alpha.zip" \
            --trimaps "$shared/data/medical-matting/trimap_brain.zip") >>"$out.log" 2>&1
    fi
}

run_jobs "$work/base" "$work/before"
run_jobs "$repo" "$work/after"

"$python" - "$work" <<'EOF'
import json, re, sys
from pathlib import Path

work = Path(sys.argv[1])
# Not results: where and when a job ran, and the resolved config (new keys get their defaults).
VOLATILE = {"seconds", "command", "run", "run_dir", "evaluated_by", "machine", "config", "source"}
paths = re.compile(r"/\S+")


def without_volatile(value):
    if isinstance(value, dict):
        return {key: without_volatile(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(item) for item in value]
    return paths.sub("", value) if isinstance(value, str) else value


def comparable(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":  # compared as data: key order is not a result
        return without_volatile(json.loads(text))
    if path.name == "log.csv":  # the last column is the epoch's wall time
        return "\n".join(line.rsplit(",", 1)[0] for line in text.splitlines())
    return "\n".join(paths.sub("", line) for line in text.splitlines() if not line.startswith(("- command", "- machine")))


files = sorted(p.relative_to(work / "before") for p in (work / "before").rglob("*")
               if p.suffix in (".json", ".md", ".csv") and p.name != "split.json")
different = [str(f) for f in files if comparable(work / "before" / f) != comparable(work / "after" / f)]
print(f"{len(files) - len(different)} of {len(files)} result files equal")
for name in different:
    print(f"DIFFERENT: {name}")
sys.exit(1 if different else 0)
EOF
