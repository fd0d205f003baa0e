#!/usr/bin/env bash
# Installation and linkage: `cmake --install` puts the binary, library, headers and
# thetanet.pc under a prefix; a program built against the installed pkg-config file runs; and
# the installed binary resolves the system BLAS to OpenBLAS at run time.
# usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/ | head -n 1)
for f in "$prefix/bin/thetanet" "$prefix/include/thetanet/thetanet.h" "$prefix/include/thetanet/tnio.h" \
         "$libdir/pkgconfig/thetanet.pc"; do
  [ -e "$f" ] || { echo "missing after install: $f"; exit 1; }
done
ls "$libdir"/libthetanet.* >/dev/null

cat >"$prefix/use.c" <<'C'
#include <thetanet.h>
int main(int argc, char **argv)
{
  /* K 3x2 + 3, W 4x3x3 + b 4x3, C 2x3 + 2 = 65 */
  TNModelConfig c = {.d = 2, .n = 3, .L = 4, .m = 2};
  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1;
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "parameters %d\n", (int)TNParamCount(&c)));
  return PetscFinalize();
}
C
export PKG_CONFIG_PATH="$libdir/pkgconfig"
mpicc "$prefix/use.c" -o "$prefix/use" $(pkg-config --cflags --libs thetanet)
out=$(LD_LIBRARY_PATH="$libdir" "$prefix/use")
[ "$out" = "parameters 65" ] || { echo "installed library gave: $out"; exit 1; }

blas=$(LD_LIBRARY_PATH="$libdir" ldd "$prefix/bin/thetanet" | awk '$1 ~ /^libblas/ {print $3}')
real=$(readlink -f "$blas")
echo "libblas resolves to $real"
case "$real" in
  *openblas*) ;;
  *) echo "thetanet does not run on OpenBLAS (install libopenblas-dev)"; exit 1 ;;
esac
echo "passed"
