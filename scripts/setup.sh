#!/usr/bin/env bash
# Set up samplegen on a fresh Debian/Ubuntu machine: system packages, then a virtual environment
# in .venv with the package installed (editable). `--dev` adds the test tools.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"

# FluidSynth renders the built-in library from Debian's GM SoundFonts (FluidR3 to train on,
# TimGM6mb to test generalisation); Chromium checks the audition page headless.
apt_packages=(libfluidsynth3 fluid-soundfont-gm fluid-soundfont-gs timgm6mb-soundfont libsndfile1 python3-venv)
[ -n "$extra" ] && apt_packages+=(chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned. PyPI's Linux wheel is the CUDA build (several GB), so a machine without an
# NVIDIA driver also looks in PyTorch's CPU index, whose 2.13.0+cpu pip then prefers (TORCH_INDEX
# names another index; an index that cannot be reached costs a few retries, then is skipped).
torch_index=${TORCH_INDEX-}
if [ -z "$torch_index" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  torch_index=https://download.pytorch.org/whl/cpu
  # pip retries an index it cannot reach for torch and each of its dependencies (75 s in all on a
  # machine whose DNS does not know the host). Without a proxy (which resolves names itself), a
  # host that does not resolve cannot be reached, so pip's own indexes are all there is.
  if [ -z "${HTTPS_PROXY:-}${https_proxy:-}${ALL_PROXY:-}${all_proxy:-}" ] &&
    ! timeout 10 "$python" -c "import socket; socket.getaddrinfo('download.pytorch.org', 443)" 2>/dev/null; then
    echo "setup: download.pytorch.org does not resolve here, so torch comes from pip's own indexes"
    torch_index=""
  fi
fi
.venv/bin/python -c "import torch" 2>/dev/null ||
  .venv/bin/pip install -q ${torch_index:+--extra-index-url "$torch_index"} "torch==2.13.0"
.venv/bin/pip install -q -e ".${extra}"
echo "setup: done (.venv)"
