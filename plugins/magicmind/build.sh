#!/usr/bin/env bash
# Builds the MagicMind shim: OUT_DIR/libmagicmind_shim.so.
#
#   plugins/magicmind/build.sh OUT_DIR
#
# With NEUWARE_HOME set (an MLU runner with the Neuware SDK): against
# $NEUWARE_HOME/include and $NEUWARE_HOME/lib64, linking magicmind,
# magicmind_parser, magicmind_runtime and cnrt. Without it: against the
# stand-in SDK (plugins/magicmind/standin/, NOT the Cambricon SDK), built
# into OUT_DIR/libmagicmind_standin.so over the reference plugin named by
# STANDIN_BACKEND (default: target/debug/examples/libreference_plugin.so).
#
# SHIM_CXXFLAGS adds flags to the shim's compile (the tests build it with
# -DSHIM_FAULT_NO_SYNC to show the harness catching a missing sync).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
CXX="${CXX:-c++}"
flags=(-std=c++11 -O2 -Wall -Wextra -shared -fPIC -pthread -I "$root/include")
if [ -n "${NEUWARE_HOME:-}" ]; then
  "$CXX" "${flags[@]}" ${SHIM_CXXFLAGS:-} -I "$NEUWARE_HOME/include" "$here/shim.cc" \
    -L "$NEUWARE_HOME/lib64" -Wl,-rpath,"$NEUWARE_HOME/lib64" \
    -lmagicmind -lmagicmind_parser -lmagicmind_runtime -lcnrt \
    -o "$out/libmagicmind_shim.so"
else
  backend="${STANDIN_BACKEND:-$root/target/debug/examples/libreference_plugin.so}"
  "$CXX" "${flags[@]}" -I "$here/standin/include" -DSTANDIN_BACKEND="\"$backend\"" \
    "$here/standin/standin.cc" -o "$out/libmagicmind_standin.so" -ldl
  "$CXX" "${flags[@]}" ${SHIM_CXXFLAGS:-} -I "$here/standin/include" "$here/shim.cc" \
    -L "$out" -Wl,-rpath,"$out" -lmagicmind_standin \
    -o "$out/libmagicmind_shim.so"
fi
echo "$out/libmagicmind_shim.so"
