#!/usr/bin/env bash
# Builds libdmsc (release) and installs it with its header and pkg-config file:
#
#   host-middleware/capi/install.sh [PREFIX]      # default /usr/local
#
#   PREFIX/lib/libdmsc.so, PREFIX/lib/libdmsc.a
#   PREFIX/include/dmsc.h
#   PREFIX/lib/pkgconfig/dmsc.pc
#
# Environment: DESTDIR (staged installs), LIBDIR (default PREFIX/lib),
# DMSC_LIB_DIR=DIR installs the libraries already built in DIR (no build).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix=${1:-/usr/local}
libdir=${LIBDIR:-$prefix/lib}
includedir=$prefix/include
destdir=${DESTDIR:-}

if [[ -z ${DMSC_LIB_DIR:-} ]]; then
    cargo build --release --manifest-path "$root/Cargo.toml" -p dmsc-capi
fi
target=${DMSC_LIB_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)

install -d "$destdir$libdir/pkgconfig" "$destdir$includedir"
install -m 0755 "$target/libdmsc.so" "$destdir$libdir/libdmsc.so"
install -m 0644 "$target/libdmsc.a" "$destdir$libdir/libdmsc.a"
install -m 0644 "$here/include/dmsc.h" "$destdir$includedir/dmsc.h"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" \
    -e "s|@INCLUDEDIR@|$includedir|g" -e "s|@VERSION@|$version|g" \
    "$here/dmsc.pc.in" >"$destdir$libdir/pkgconfig/dmsc.pc"
echo "installed libdmsc $version in $destdir$prefix (pkg-config: $libdir/pkgconfig/dmsc.pc)"
