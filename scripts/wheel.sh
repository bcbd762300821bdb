#!/usr/bin/env bash
# Builds the installable wheel: dist/tenantry-<version>-cp310-abi3-manylinux_*.whl,
# one file for CPython >= 3.10 on x86-64 Linux with glibc >= the tag's version,
# that installs with plain pip where no Rust toolchain exists.
#
# Needs Rust >= 1.85 here (not where the wheel is installed). No zig and no
# container: the extension links against this machine's glibc, and maturin's
# auditwheel check picks the lowest manylinux tag the binary satisfies (and
# fails if it links a library outside the manylinux set). The cargo build is
# the same release build `maturin develop --release` makes, so after
# scripts/test.sh it only repackages. Built on Debian 12 the tag is
# manylinux_2_34 (Rust's std links glibc 2.34 symbols): it installs on
# glibc >= 2.34. An older floor needs an older build host (a manylinux_2_28
# container), which this script does not download.
# Usage: scripts/wheel.sh [extra maturin build args]
source "$(dirname "$0")/env.sh"
cd "$ROOT"

ensure_venv "$ROOT/requirements/test.txt"

log "maturin build --release (abi3, manylinux, audited) into dist/"
rm -f "$ROOT"/dist/tenantry-*.whl
"$VENV/bin/maturin" build --release --quiet --auditwheel check --out "$ROOT/dist" \
    --interpreter "$PY" "$@"
ls "$ROOT"/dist/tenantry-*-abi3-manylinux*.whl
