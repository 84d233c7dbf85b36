#!/usr/bin/env bash
# `npm test`: every check of the project, in one run. Stages run even when an earlier one failed, so one
# run shows everything that is wrong; the exit code is non-zero when any stage failed.
#   0 format      prettier --check on the TypeScript of the tree (.prettierrc.json: 120 columns)
#   1 typecheck   tsc --noEmit (strict, erasable syntax only)
#   2 unit        node:test files under test/unit (pure logic, config, doubles, app-less parts)
#   3 bats        CLI behaviour of every script (test/bats)
#   4 shellcheck  every .sh file in the repository
#   5 e2e         real SSH against a disposable sandbox server (test/e2e; needs root and systemd-nspawn)
# Set CODEXK8S_TEST_STAGES="unit bats" to run a subset while developing.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

stages=${CODEXK8S_TEST_STAGES:-format typecheck unit bats shellcheck e2e}
passed=0 failed=0 failed_stages=()
out_dir=test/.out
mkdir -p "$out_dir"

count_node() { # FILE: adds the node:test totals ("# pass N" / "# fail N" in TAP)
  local p f
  p=$(grep -E '^# pass [0-9]+' "$1" | tail -1 | awk '{print $3}')
  f=$(grep -E '^# fail [0-9]+' "$1" | tail -1 | awk '{print $3}')
  passed=$((passed + ${p:-0})) failed=$((failed + ${f:-0}))
}

stage() { # NAME COMMAND...
  local name=$1 start rc
  shift
  case " $stages " in *" $name "*) ;; *) return 0 ;; esac
  echo "=== $name: $*"
  start=$(date +%s)
  "$@"
  rc=$?
  echo "=== $name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - start))s"
  if [ $rc -ne 0 ]; then failed_stages+=("$name"); fi
  return 0
}

node_tests() { # LOG CONCURRENCY FILE...
  local log=$1 concurrency=$2 rc
  shift 2
  node --import tsx --test --test-reporter=tap --test-concurrency="$concurrency" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  count_node "$log"
  return "$rc"
}

format() {
  # The same globs as `npm run format`; a file that is not formatted fails the stage and is named.
  if node_modules/.bin/prettier --check 'bootstrap/**/*.mts' 'app/**/*.mts' 'test/**/*.mts'; then passed=$((passed + 1)); else failed=$((failed + 1)); return 1; fi
}

typecheck() {
  if node_modules/.bin/tsc --noEmit -p tsconfig.json; then passed=$((passed + 1)); else failed=$((failed + 1)); return 1; fi
}

unit() {
  local files
  mapfile -t files < <(find test/unit -name '*.test.mts' | sort)
  # Four files at a time on two cores: many unit files mostly wait (the GitHub client spaces its writes by 1 s, as
  # GitHub asks of integrations; PostgreSQL and the app start; the doubles start a process per call). Measured:
  # 175 s with two at a time, 139 s with four.
  node_tests "$out_dir/unit.tap" 4 "${files[@]}"
}

bats_tests() {
  local rc p f
  node_modules/bats/bin/bats --tap test/bats 2>&1 | tee "$out_dir/bats.tap"
  rc=${PIPESTATUS[0]}
  p=$(grep -cE '^ok ' "$out_dir/bats.tap")
  f=$(grep -cE '^not ok ' "$out_dir/bats.tap")
  passed=$((passed + p)) failed=$((failed + f))
  return "$rc"
}

shellcheck_all() {
  local files
  mapfile -t files < <(git ls-files -co --exclude-standard '*.sh' | sort; echo .ci/run)
  if shellcheck --severity=style "${files[@]}"; then
    echo "shellcheck: ${#files[@]} files clean"
    passed=$((passed + ${#files[@]}))
  else
    failed=$((failed + 1))
    return 1
  fi
}

e2e() {
  local files
  mapfile -t files < <(find test/e2e -name '*.test.mts' | sort)
  # Three sandboxes at a time: an end-to-end file waits a lot (SSH round trips, service starts, bounded waits), but
  # on two cores the stage is CPU-bound beyond that. Measured on this machine: 829 s with two, 757 s with three.
  node_tests "$out_dir/e2e.tap" 3 "${files[@]}"
}

stage format format
stage typecheck typecheck
stage unit unit
stage bats bats_tests
stage shellcheck shellcheck_all
stage e2e e2e

echo
if [ ${#failed_stages[@]} -gt 0 ]; then echo "failed stages: ${failed_stages[*]}"; fi
echo "tests: $passed passed, $failed failed"
[ ${#failed_stages[@]} -eq 0 ] && [ "$failed" -eq 0 ]
