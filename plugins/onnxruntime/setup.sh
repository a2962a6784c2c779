#!/usr/bin/env bash
# Installs ONNX Runtime (the `onnxruntime` wheel, from the package registry)
# into a venv under target/ and prints the path of its shared library, for
# ORT_DYLIB_PATH:
#
#   export ORT_DYLIB_PATH=$(plugins/onnxruntime/setup.sh)
#
# Fails loudly when the wheel cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${ORT_VENV:-target/ort-venv}"
VERSION="${ORT_VERSION:-1.30.0}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" >&2
fi
if ! "$VENV/bin/python" -c "import onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$VERSION')" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "onnxruntime==$VERSION" >&2
fi
lib=$(ls "$PWD/$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1)
if [ -z "$lib" ]; then
  echo "setup.sh: no libonnxruntime.so in $VENV after installing onnxruntime==$VERSION" >&2
  exit 1
fi
echo "$lib"
