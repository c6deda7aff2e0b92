#!/usr/bin/env bash
# Run HERE (a machine with PyPI): fills the carry folder .gpu/ for one device call.
#   .gpu/llama-src.tgz   the parts of llama-cpp-python's vendored llama.cpp tree that CMake needs
#                        to configure and build the llama-server target (tests/examples off)
#   .gpu/wheels/         cp312 manylinux x86_64 wheels of what the device's python3 lacks,
#                        installed there with --no-deps into a --target folder
#   .gpu/wheels/fallback wheels the device very likely has (pyyaml, tqdm): installed only if missing
#   .gpu/redis/          Debian's redis-server and redis-tools .deb files and the libraries they link
#                        (S7, `serve --processes N`: the supervisor starts a private redis-server);
#                        device_run.sh unpacks them with dpkg-deb -x, no root install
# Then on the device: bash tests/perf/gpu/device_run.sh   (carry [".gpu"])
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE_ROOT="${BEACON_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beacon-gateway}"
SDIST="$CACHE_ROOT/llama_cpp_python-$VERSION.tar.gz"
OUTDIR=.gpu
mkdir -p "$CACHE_ROOT"
grep -qx '/.gpu/' .gitignore 2>/dev/null || echo '/.gpu/' >> .gitignore

if [ ! -s "$SDIST" ]; then
  echo "pack: downloading llama-cpp-python==$VERSION sdist into $CACHE_ROOT"
  python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE_ROOT"
fi

rm -rf "$OUTDIR.tmp" && mkdir -p "$OUTDIR.tmp/wheels/fallback"
work="$(mktemp -d)"
trap 'rm -rf "$work" "$OUTDIR.tmp"' EXIT
top="llama_cpp_python-$VERSION/vendor/llama.cpp"
parts=(CMakeLists.txt cmake ggml src common include vendor tools app pocs licenses scripts LICENSE)
echo "pack: extracting ${parts[*]} of $top"
tar -xzf "$SDIST" -C "$work" "${parts[@]/#/$top/}"
# tools/ also holds programs the server target does not build; CMake only needs their folders to exist
# for add_subdirectory (scripts/ui-assets.cmake provisions the server UI), so keep them; drop test folders.
rm -rf "$work/$top/tools/ui/tests" "$work/$top/tools/server/tests" 2>/dev/null || true
tar -czf "$OUTDIR.tmp/llama-src.tgz" -C "$work/$top" .

PIP=(python3 -m pip download --quiet --only-binary :all: --python-version 3.12 --implementation cp --abi cp312
     --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
     --platform manylinux_2_27_x86_64)
# What the gateway imports that the device's python3 lacks (see device README/KINDS.md), with their own
# needs that a torch environment may lack. aiohttp, numpy, uvloop, prometheus-client, nvidia-ml-py are there.
echo "pack: downloading wheels"
"${PIP[@]}" --no-deps -d "$OUTDIR.tmp/wheels" \
  "pydantic==2.13.4" "pydantic-core==2.46.4" "pydantic-settings==2.14.1" "annotated-types==0.7.0" \
  "typing-inspection==0.4.2" "typing-extensions==4.16.0" "python-dotenv==1.2.2" \
  "aiohttp-retry==2.9.1" "orjson==3.13.0" "structlog==26.1.0" "gguf==0.19.0" "redis==8.1.0"
"${PIP[@]}" --no-deps -d "$OUTDIR.tmp/wheels/fallback" "pyyaml==6.0.3" "tqdm==4.70.1"

# redis-server is a link to redis-check-rdb (in redis-tools); the libraries are the ones its ldd names
# beyond glibc and libstdc++. device_run.sh uses the carried libraries only where the device lacks them.
echo "pack: downloading Debian's redis-server and the libraries it links"
mkdir -p "$OUTDIR.tmp/redis"
(cd "$OUTDIR.tmp/redis" && apt-get download -q redis-server redis-tools liblzf1 libjemalloc2 libatomic1 libssl3 \
   libsystemd0 libcap2 libgcrypt20 liblzma5 libzstd1 liblz4-1 libgpg-error0 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
ls "$OUTDIR.tmp/redis"/redis-tools_*.deb >/dev/null || { echo "pack: apt-get download of redis-tools failed" >&2; exit 1; }

rm -rf "$OUTDIR" && mv "$OUTDIR.tmp" "$OUTDIR"
echo "pack: contents"
ls -la "$OUTDIR" "$OUTDIR/wheels" "$OUTDIR/wheels/fallback" "$OUTDIR/redis"
du -sh "$OUTDIR"
total=$(du -sb "$OUTDIR" | cut -f1)
[ "$total" -lt $((60 * 1024 * 1024)) ] || { echo "pack: .gpu is over 60 MiB" >&2; exit 1; }
echo "pack: ok; device call: bash tests/perf/gpu/device_run.sh  with carry [\".gpu\"]"
