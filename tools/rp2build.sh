#!/usr/bin/env bash
# Build MicroPython for the smartPDU from the offline bundle (../shared/rp2, MicroPython 1.28.0
# sources) with its build.sh: `make firmware` runs this.
#
# usage: tools/rp2build.sh SHARED_RP2 WORKDIR MANIFEST [STAMP]
#
# WORKDIR/out gets, with stable names:
#   firmware-stock.uf2   stock RPI_PICO image (built once: no project input)
#   smartpdu-rp2.uf2     the production image: RPI_PICO with protocol/, firmware/, boards/
#                        frozen by MANIFEST (rebuilt on every call: the frozen part changed)
#   micropython-32       32-bit (i386) unix port with the bundle's unix-romfs-mmap.diff applied
#                        ($SMARTPDU_ROMFS_FILE: run modules in place from a ROMFS image);
#                        built once
#   mpy-cross            MicroPython 1.28.0's cross compiler
# STAMP (a file name) is touched when everything is built; other stamps in its folder go.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 SHARED_RP2 WORKDIR MANIFEST [STAMP]" >&2; exit 2; }
shared=$1; work=$2; manifest=$3; stamp=${4:-}
if [ ! -x "$shared/build.sh" ] || [ ! -f "$shared/micropython-1.28.0-rp2-sources.tar.xz" ]; then
  echo "rp2build: no MicroPython bundle at $shared (build.sh and the sources tarball);" \
       "set RP2_SHARED=<folder> on the make command line" >&2
  exit 1
fi
mkdir -p "$work/out"
out=$work/out; src=$work/src
start=$SECONDS
step() { echo "rp2build: $*"; }

# The sources, unpacked once (build.sh would too); the ROMFS mapping patch applied once.
if [ ! -d "$src/micropython" ]; then
  step "unpacking the MicroPython 1.28.0 sources"
  mkdir -p "$src"
  tar -xJf "$shared/micropython-1.28.0-rp2-sources.tar.xz" -C "$src"
fi
if [ ! -f "$src/.unix-romfs-mmap-applied" ]; then
  step "applying unix-romfs-mmap.diff"
  patch -s -d "$src/micropython" -p1 --forward <"$shared/unix-romfs-mmap.diff"
  touch "$src/.unix-romfs-mmap-applied"
  rm -f "$out/micropython-32"  # built without it
fi

# Frozen viper/native code for the RP2040 must be word aligned (see the diff's header): without
# this the RMS engine's frozen viper kernels jump to garbage on the chip.
if [ ! -f "$src/.mpy-tool-armv6m-align-applied" ]; then
  step "applying mpy-tool-armv6m-align.diff"
  patch -s -d "$src/micropython" -p1 --forward <"$(dirname "$0")/rp2/mpy-tool-armv6m-align.diff"
  touch "$src/.mpy-tool-armv6m-align-applied"
  rm -rf "$src/micropython/ports/rp2/build-frozen"  # frozen code made without it
fi

# The rp2 port configures a build folder once (cmake), with the manifest it had then: a folder
# configured for another manifest is started again.
manifest_abs=$(cd "$(dirname "$manifest")" && pwd)/$(basename "$manifest")
cache=$src/micropython/ports/rp2/build-frozen/CMakeCache.txt
if [ -f "$cache" ] && ! grep -qxF "MICROPY_FROZEN_MANIFEST:UNINITIALIZED=$manifest_abs" "$cache"; then
  step "frozen build folder was configured for another manifest: starting it again"
  rm -rf "$src/micropython/ports/rp2/build-frozen"
fi

targets=()
[ -f "$out/firmware-stock.uf2" ] || targets+=(stock)
[ -x "$out/micropython-32" ] || targets+=(unix32)
targets+=(frozen "$manifest_abs")
step "building ${targets[*]} (stock + unix32 take ~1.5 min, frozen ~45 s on 2 cores)"
"$shared/build.sh" "$work" "${targets[@]}" >/dev/null
cp -f "$out/firmware-frozen.uf2" "$out/smartpdu-rp2.uf2"
if [ -n "$stamp" ]; then
  rm -f "$(dirname "$stamp")"/.smartpdu-*
  touch "$stamp"
fi
step "done in $((SECONDS - start)) s: $(cd "$out" && ls | tr '\n' ' ')"
