#!/usr/bin/env bash
# Run ON the lent GPU machine, from the repository root, with .gpu/ carried (made by pack.sh):
#   bash tests/perf/gpu/device_run.sh
# In one call of at most 10 minutes: installs the carried wheels into /tmp/gpu-site, writes the
# random-weight 1B/3B-shaped GGUF models (in the background) while it builds llama-server with CUDA
# (sm_90, server target only), then runs tests/perf/gpu/gpu_bench.py with what time is left.
# Everything it reports lands in $OUT (8 files at most): build_tail.log, bench.log and the bench's
# gpu_check.json, s6_e2e.json, s4_affinity.json, s5_failover.json, summary.json, logs_tail.txt.
# Env: GPU_RUN_LIMIT_S (default 580: when everything must be done), GPU_RUN_FAST_BUILD=1 (no
# flash-attention CUDA kernels: a shorter build), GPU_RUN_JOBS (default: nproc). For trying this
# script on a machine without a GPU: GPU_RUN_SKIP_WHEELS=1 (use the packages python3 has) and
# GPU_RUN_SMOKE=1 (tiny models, gpu_bench --cpu-smoke; put a CPU llama-server at /tmp/llama-cuda/bin).
# GPU_BENCH_ARGS: more gpu_bench arguments, e.g. "--processes 4" (S7 alone: it then writes
# s7_processes.json, and only the 1B model). Carried .gpu/redis/*.deb give it a redis-server.
set -uo pipefail
T0=$(date +%s)
LIMIT=${GPU_RUN_LIMIT_S:-580}
OUT=${OUT:-$PWD/out/gpu-run}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
SITE=/tmp/gpu-site
MODELS=/tmp/gpu-bench-models
SMOKE=()
if [ "${GPU_RUN_SMOKE:-0}" = 1 ]; then MODELS=/tmp/gpu-bench-smoke-models; SMOKE=(--cpu-smoke); fi
SRC=/tmp/llama-src
BUILD=/tmp/llama-build
BINDIR=/tmp/llama-cuda/bin
JOBS=${GPU_RUN_JOBS:-$(nproc)}
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "[device_run $(elapsed)s] $*"; }

[ -f .gpu/llama-src.tgz ] && ls .gpu/wheels/*.whl >/dev/null 2>&1 || {
  say "FATAL: .gpu/ is missing: run tests/perf/gpu/pack.sh here first and carry [\".gpu\"]"; exit 2; }
say "host: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(df -h /tmp | awk 'NR==2{print $4}') free in /tmp"
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv,noheader | sed 's/^/[device_run] gpu: /'
say "$(python3 --version) at $(command -v python3); $(cmake --version | head -1); nvcc $(nvcc --version | grep -o 'release [0-9.]*'); ninja $(ninja --version 2>/dev/null || echo absent); taskset $(command -v taskset >/dev/null && echo yes || echo absent)"

# 1. Python packages the device lacks (carried wheels, no network there)
[ "${GPU_RUN_SKIP_WHEELS:-0}" = 1 ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/wheels/*.whl \
  || { say "FATAL: pip install of the carried wheels failed"; exit 3; }
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${GPU_RUN_SKIP_WHEELS:-0}" != 1 ] && ! python3 -c "import yaml, tqdm" 2>/dev/null; then
  say "installing fallback wheels (pyyaml, tqdm)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .gpu/wheels/fallback/*.whl
fi
python3 - <<'EOF' || { say "FATAL: an import failed"; exit 3; }
import importlib
import warnings
warnings.simplefilter("ignore")
names = ["pydantic", "pydantic_settings", "aiohttp_retry", "orjson", "structlog", "gguf", "aiohttp", "numpy",
         "pynvml", "prometheus_client", "yaml", "redis", "gateway.app", "gateway.cli", "gateway.processes",
         "local_workers.tinygguf"]
found = {}
for n in names:
    m = importlib.import_module(n)
    found[n] = getattr(m, "__version__", "ok")
for n in ("uvloop",):  # optional
    try:
        found[n] = getattr(importlib.import_module(n), "__version__", "ok")
    except ImportError:
        found[n] = "absent"
print("[device_run] imports:", ", ".join(f"{k} {v}" for k, v in found.items()))
EOF

# 1b. redis-server from the carried .deb files (S7's `serve --processes N` starts a private one):
# unpacked, not installed; a wrapper on PATH gives it the carried libraries the device lacks only.
if ls .gpu/redis/redis-tools_*.deb >/dev/null 2>&1 && ! command -v redis-server >/dev/null; then
  R=/tmp/redis-root
  rm -rf "$R" && mkdir -p "$R/bin" "$R/lib"
  for f in .gpu/redis/*.deb; do dpkg-deb -x "$f" "$R/pkg"; done
  for _ in 1 2 3; do  # a library brought in can need another the device lacks
    for so in $(LD_LIBRARY_PATH="$R/lib" ldd "$R/pkg/usr/bin/redis-check-rdb" | awk '/not found/{print $1}'); do
      cp -a "$R"/pkg/usr/lib/x86_64-linux-gnu/"$so"* "$R/lib/" 2>/dev/null \
        || cp -a "$R"/pkg/lib/x86_64-linux-gnu/"$so"* "$R/lib/" 2>/dev/null || say "redis: no carried $so"
    done
  done
  # the package's redis-server is a link to redis-check-rdb, which picks its mode from argv[0]
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$R/lib" "$R/pkg/usr/bin/redis-server" > "$R/bin/redis-server"
  chmod +x "$R/bin/redis-server"
  export PATH="$R/bin:$PATH"
  say "redis: carried libraries used: $(ls "$R/lib" | tr '\n' ' '); $(redis-server --version 2>&1 | head -1)"
fi

# 2. Models: written in the background while llama-server builds (tmp name, then renamed)
mkdir -p "$MODELS"
ONLY=all; case " ${GPU_BENCH_ARGS:-} " in *" --processes "*) ONLY=1b;; esac
python3 - "$MODELS" "${GPU_RUN_SMOKE:-0}" "$ONLY" > /tmp/models.log 2>&1 <<'EOF' &
import sys, time
from pathlib import Path
from local_workers.tinygguf import make_shaped_llama
folder = Path(sys.argv[1])
if sys.argv[2] == "1":
    sys.exit(0)  # smoke: gpu_bench makes its tiny models itself
wanted = (("bench-1b", "llama-3.2-1b"), ("bench-3b", "llama-3.2-3b"))
for name, shape in wanted[:1] if sys.argv[3] == "1b" else wanted:
    final, tmp = folder / f"{name}.gguf", folder / f"{name}.gguf.tmp"
    if final.is_file():
        continue
    t = time.perf_counter()
    make_shaped_llama(tmp, shape, name=name)
    tmp.rename(final)
    print(f"{name}: {final.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t:.1f}s", flush=True)
EOF
MODELS_PID=$!
say "writing models in the background (pid $MODELS_PID)"

# 3. llama-server with CUDA (skipped when an earlier call on this warm machine built it)
if [ -x "$BINDIR/llama-server" ]; then
  say "llama-server already built at $BINDIR"
else
  rm -rf "$SRC" "$BUILD" && mkdir -p "$SRC"
  tar -xzf .gpu/llama-src.tgz -C "$SRC"
  GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
  FA=(); [ "${GPU_RUN_FAST_BUILD:-0}" = 1 ] && FA=(-DGGML_CUDA_FA=OFF)
  say "configuring (${GEN[*]:-make} ${FA[*]:-})"
  cmake -S "$SRC" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGGML_CUDA_NCCL=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DGGML_CCACHE=OFF "${FA[@]}" > /tmp/build.log 2>&1 \
    || { say "FATAL: cmake configure failed"; tail -n 80 /tmp/build.log > "$OUT/build_tail.log"; tail -n 30 /tmp/build.log; exit 4; }
  BUILD_LIMIT=$(( LIMIT - $(elapsed) - 90 ))
  say "building llama-server -j$JOBS (gives up after ${BUILD_LIMIT}s)"
  timeout "$BUILD_LIMIT" cmake --build "$BUILD" --target llama-server -j"$JOBS" >> /tmp/build.log 2>&1 &
  BUILD_PID=$!
  while kill -0 "$BUILD_PID" 2>/dev/null; do
    sleep 20
    say "build: $(grep -o '^\[[ 0-9/%]*\]' /tmp/build.log | tail -1)"
  done
  wait "$BUILD_PID"; rc=$?
  tail -n 80 /tmp/build.log > "$OUT/build_tail.log"
  if [ $rc -ne 0 ] || [ ! -x "$BUILD/bin/llama-server" ]; then
    say "FATAL: build failed (rc $rc)"; tail -n 30 /tmp/build.log; exit 4
  fi
  mkdir -p "$BINDIR" && cp -a "$BUILD"/bin/. "$BINDIR/"
  say "built llama-server"
fi
LD_LIBRARY_PATH="$BINDIR" "$BINDIR/llama-server" --version 2>&1 | tail -n 4 | sed 's/^/[device_run] llama-server: /'

# 4. Models done?
wait "$MODELS_PID" || { say "FATAL: model writing failed"; cat /tmp/models.log; exit 5; }
sed 's/^/[device_run] model /' /tmp/models.log
ls -la "$MODELS"

# 5. The benchmark with the time that is left
REMAIN=$(( LIMIT - $(elapsed) ))
if [ "$REMAIN" -lt 90 ]; then
  say "FATAL: only ${REMAIN}s left for the benchmark; rerun (the build is kept while the machine stays warm)"; exit 6
fi
say "gpu_bench with a budget of $(( REMAIN - 15 ))s"
timeout -k 5 "$(( REMAIN - 5 ))" python3 tests/perf/gpu/gpu_bench.py --out "$OUT" --models "$MODELS" \
  --llama-server "$BINDIR/llama-server" --budget-s "$(( REMAIN - 15 ))" "${SMOKE[@]}" ${GPU_BENCH_ARGS:-} 2>&1 \
  | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
say "done: gpu_bench exit $rc; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$rc"
