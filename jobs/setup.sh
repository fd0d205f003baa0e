#!/usr/bin/env bash
# Shared set-up of the README's commands: install the Debian 12 packages thetanet needs (only
# those missing) and build into build/. Sourced by jobs/quickstart.sh and tests/run.sh.
set -euo pipefail

THETANET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
THETANET_BUILD=${THETANET_BUILD:-$THETANET_ROOT/build}
packages=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev petsc-dev libhdf5-openmpi-dev
          libcmocka-dev libopenblas-dev python3 python3-h5py python3-numpy python3-matplotlib)
# more, for the scripts that need them (jobs/scaling/simulate: libsimgrid-dev)
read -r -a extra <<< "${THETANET_EXTRA_PACKAGES:-}"
packages+=("${extra[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "thetanet setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S "$THETANET_ROOT" -B "$THETANET_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
log=$(mktemp)
cmake --build "$THETANET_BUILD" -j "$(nproc)" >"$log" 2>&1 || { cat "$log"; rm -f "$log"; exit 1; }
grep -E "warning|error" "$log" || true
rm -f "$log"

# Open MPI refuses root unless told; one rank per core wants single-threaded BLAS.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# Debian's python3-h5py lives with /usr/bin/python3, which another python3 on PATH may shadow.
THETANET_PYTHON=python3
/usr/bin/python3 -c "import h5py" 2>/dev/null && THETANET_PYTHON=/usr/bin/python3
export THETANET_PYTHON
