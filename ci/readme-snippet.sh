#!/usr/bin/env bash
# Builds the README's "Use it from your own tests" blocks (the toml and the
# rust one) as a new crate against this checkout, exactly as written except
# the dependency's path, and runs its tests: they must pass on the reference
# plugin, fail (in the stress tests, on torn outputs) on the torn build of
# plugins/example.c, and fail without REFIT_ENGINE, saying how to name one.
# Run by .ci/run; about 4 minutes on 2 cores, most of it compiling the
# harness for the new crate (target/readme-snippet/).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

section=$(awk '/^## Use it from your own tests/ {f = 1; next} /^## / {f = 0} f' README.md)
block() { printf '%s\n' "$section" | awk -v lang="$1" '$0 == "```" lang {f = 1; next} /^```/ {if (f) exit} f'; }
toml=$(block toml)
rust=$(block rust)
[ -n "$toml" ] && [ -n "$rust" ] || { echo "readme-snippet: no toml or rust block in the section" >&2; exit 1; }

crate="$work/vendor-suite"
mkdir -p "$crate/src" "$crate/tests"
{
    printf '[package]\nname = "vendor-suite"\nversion = "0.1.0"\nedition = "2021"\n\n[workspace]\n\n'
    printf '%s\n' "$toml" | sed "s|path = \"../refit-harness\"|path = \"$root\"|"
} > "$crate/Cargo.toml"
: > "$crate/src/lib.rs"
printf '%s\n' "$rust" > "$crate/tests/refit.rs"
cp Cargo.lock "$crate/"

cargo build --quiet --example reference_plugin
good="plugin:$root/target/debug/examples/libreference_plugin.so"
cc -shared -fPIC -O2 -pthread -I include -DFAULT_TORN plugins/example.c -o "$work/libtorn.so" -lm
torn="plugin:$work/libtorn.so"

export CARGO_TARGET_DIR="$root/target/readme-snippet"
echo "readme-snippet: the suite on the reference plugin"
(cd "$crate" && REFIT_ENGINE="$good" cargo test --quiet 2>&1) > "$work/good.log" || true
tail -3 "$work/good.log"
grep -q "test result: ok. 15 passed" "$work/good.log" || { grep -A12 "^---- " "$work/good.log" >&2; echo "readme-snippet: expected 15 passing tests, one per scenario" >&2; exit 1; }

echo "readme-snippet: the suite without REFIT_ENGINE (must fail, saying how to name one)"
if (cd "$crate" && env -u REFIT_ENGINE cargo test --quiet -- --exact seed > "$work/unset.log" 2>&1); then
    echo "readme-snippet: the suite passed without REFIT_ENGINE" >&2
    exit 1
fi
grep -q "REFIT_ENGINE is not set" "$work/unset.log" || { tail -20 "$work/unset.log" >&2; echo "readme-snippet: no message naming REFIT_ENGINE" >&2; exit 1; }

echo "readme-snippet: the suite on the torn example plugin (must fail)"
if (cd "$crate" && REFIT_ENGINE="$torn" cargo test --quiet -- --test-threads 1 > "$work/torn.log" 2>&1); then
    echo "readme-snippet: the suite passed on the torn plugin" >&2
    exit 1
fi
grep -q "stress_r1w1 .*FAILED\|stress_r1w1 ... FAILED" "$work/torn.log" || { tail -40 "$work/torn.log" >&2; echo "readme-snippet: stress_r1w1 did not fail" >&2; exit 1; }
grep -q "torn" "$work/torn.log" || { echo "readme-snippet: no torn output named" >&2; exit 1; }
echo "readme-snippet: passes on the reference plugin, fails on the torn one"
