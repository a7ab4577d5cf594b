#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system tools the tests need, build (spawned
# CLI processes run the built packages), type-check the examples, then vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-test-deps.sh
npx -y pnpm@10 run build
npx -y pnpm@10 exec tsc --noEmit -p examples/tsconfig.json
npx -y pnpm@10 exec vitest run "$@"
