#!/usr/bin/env bash
# One prepared device run: the fmnist VGG11 matrix (benchmarks/specs/fmnist-vgg11.yaml) on a GPU.
# Uses the device's own torch; installs only what is missing from a carried wheelhouse (data/wheelhouse,
# pure-Python or abi3 wheels fetched with `pip download`), and the Fashion-MNIST IDX files carried in
# data/fmnist. Writes the benchmark JSON and the AssessmentResults under $OUT (default benchmarks/out/gpu,
# git-ignored; the run docs/ cites is kept in benchmarks/results/gpu).
set -uo pipefail
OUT=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY - <<'PYEOF'
import importlib, sys
print("python", sys.version.split()[0])
missing = []
for mod in ["torch", "torchvision", "numpy", "scipy", "sklearn", "skimage", "pydantic", "pydantic_settings",
            "safetensors", "yaml", "tqdm", "opacus", "pandas", "typing_inspection", "annotated_types"]:
    try:
        m = importlib.import_module(mod)
        print(f"have {mod} {getattr(m, '__version__', '')}")
    except Exception as exc:
        missing.append(mod)
        print(f"MISSING {mod}: {type(exc).__name__}")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
open("/tmp/missing.txt", "w").write(" ".join(missing))
PYEOF
for mod in $(cat /tmp/missing.txt); do
  case $mod in
    pydantic_settings) pkgs="pydantic-settings python-dotenv";; safetensors) pkgs=safetensors;; tqdm) pkgs=tqdm;;
    typing_inspection) pkgs=typing-inspection;; annotated_types) pkgs=annotated-types;; opacus) pkgs=opacus;;
    pydantic) pkgs="pydantic pydantic-core";; *) pkgs="";;
  esac
  [ -n "$pkgs" ] && $PY -m pip install -q --no-index --no-deps --target /tmp/pylibs --find-links data/wheelhouse $pkgs
done
export PYTHONPATH=$PWD:/tmp/pylibs AMULET_DATA_DIR=$PWD/data AMULET_HOME=/tmp/amulet-home
start=$(date +%s)
$PY -u -m benchmarks.bench_census_matrix --spec benchmarks/specs/fmnist-vgg11.yaml --device cuda -v --no-rerun \
  --output "$OUT/bench_fmnist_vgg11_gpu.json" --save-results "$OUT/fmnist_vgg11_gpu_results.json"
echo "rc=$? wall=$(( $(date +%s) - start ))s"
