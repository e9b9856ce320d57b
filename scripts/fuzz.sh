#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60) with
# cargo-fuzz on nightly Rust, starting from the committed corpus (fuzz/corpus).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
#
# A finding stops its target and is saved under fuzz/artifacts/TARGET/. Keep it as a
# regression input: copy it to fuzz/regressions/TARGET/, fix the code, and commit
# both; crates/khoa-server/tests/fuzz_corpus.rs replays it on every test run. After
# a long run, `cargo +nightly fuzz cmin TARGET` keeps the corpus small.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(token_request authorization_request jwt tconnect hutech)
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log="$work/build.log"
cargo +nightly fuzz build -O >"$log" 2>&1 || { cat "$log"; exit 1; }
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    # New interesting inputs go to the first folder: the committed corpus, or with
    # KHOA_FUZZ_SCRATCH=1 (the test command) a temporary one.
    dirs=("fuzz/corpus/$t")
    if [[ "${KHOA_FUZZ_SCRATCH:-}" == 1 ]]; then
        mkdir -p "$work/$t"
        dirs=("$work/$t" "fuzz/corpus/$t")
    fi
    echo "fuzz: $t for ${secs}s"
    cargo +nightly fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$secs" -max_len=4096 -timeout=10 \
        -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|==|SUMMARY|Test unit written|artifact_prefix)" || true
    if compgen -G "fuzz/artifacts/$t/crash-*" >/dev/null || compgen -G "fuzz/artifacts/$t/timeout-*" >/dev/null \
        || compgen -G "fuzz/artifacts/$t/oom-*" >/dev/null; then
        echo "fuzz: $t found an input that fails; see fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
