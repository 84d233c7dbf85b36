#!/usr/bin/env bats
# The server lock (bootstrap/lib/remote_helpers.sh lock-*), run for real against a lock directory of its own:
# a holder is alive while its step or its connection process lives (pid AND start time), gone otherwise; a lock
# that records no process is judged by its age; a directory that root did not create is refused, never trusted.

load '../../node_modules/bats-support/load'
load '../../node_modules/bats-assert/load'

H=./bootstrap/lib/remote_helpers.sh

setup() {
  cd "$BATS_TEST_DIRNAME/../.." || exit 1
  BASE=$(mktemp -d)
  L=$BASE/codex-k8s-bootstrap
}

teardown() {
  if [ -n "${SLEEPER:-}" ]; then kill -9 "$SLEEPER" 2>/dev/null || true; fi
  rm -rf "$BASE"
}

# A process that ends when we say so, and the pid of one that has ended.
start_sleeper() { sleep 300 & SLEEPER=$!; }
dead_pid() { sh -c 'echo $$'; }

@test "lock: taken by a step run by hand, with every liveness field, owner inside a root 0700 directory" {
  start_sleeper
  run bash "$H" lock-acquire "$L" tok1 "ana@srv (by hand)" R1 10_harden_host 7200 "$SLEEPER"
  assert_success
  assert_output acquired
  run stat -c '%u %a' "$L"
  assert_output '0 700'
  for k in token holder since run step boot_id pid pid_start step_pid step_start; do grep -q "^$k=." "$L/owner"; done
  grep -qx "boot_id=$(cat /proc/sys/kernel/random/boot_id)" "$L/owner"
  grep -qx "step_pid=$SLEEPER" "$L/owner"
  # No half-made lock is left beside it.
  run sh -c "ls -a '$BASE' | grep -c new"
  assert_output 0
}

@test "lock: refused with exit 3 while the holder's step lives; taken over once it has ended" {
  start_sleeper
  bash "$H" lock-acquire "$L" tok1 "ana@srv" R1 20_install_k3s 7200 "$SLEEPER"
  run bash "$H" lock-acquire "$L" tok2 "bob@srv" R2 10_harden_host 7200 "$(dead_pid)"
  assert_failure 3
  assert_line --index 0 held
  assert_line "alive=step $SLEEPER"
  assert_line "token=tok1"
  kill -9 "$SLEEPER"
  wait "$SLEEPER" 2>/dev/null || true
  run bash "$H" lock-acquire "$L" tok2 "bob@srv" R2 10_harden_host 7200 "$(dead_pid)"
  assert_success
  assert_line --index 0 took-over
  assert_line "reason=its connection and its step have ended"
  assert_line "previous.run=R1"
  assert_line "previous.step=20_install_k3s"
  grep -qx token=tok2 "$L/owner"
}

@test "lock: a step that was killed but never reaped (a zombie) is not alive" {
  # The child exits after its parent has exec'd into sleep, which never waits for it, so it stays a zombie. (A child
  # that exits at once may be reaped by the shell before its exec: then there is no zombie to test.)
  sh -c 'sh -c "sleep 0.3; exit 0" & echo $! > "$1"; exec sleep 300' _ "$BASE/child" &
  SLEEPER=$!
  for _ in $(seq 50); do [ -s "$BASE/child" ] && [ "$(cut -d' ' -f3 "/proc/$(cat "$BASE/child")/stat" 2>/dev/null)" = Z ] && break; sleep 0.1; done
  zombie=$(cat "$BASE/child")
  run cut -d' ' -f3 "/proc/$zombie/stat"
  assert_output Z
  bash "$H" lock-acquire "$L" tok1 "ana@srv" R1 20_install_k3s 7200 "$zombie"
  run bash "$H" lock-acquire "$L" tok2 "bob@srv" R2 10_harden_host 7200 "$(dead_pid)"
  assert_success
  assert_line --index 0 took-over
  assert_line "reason=its connection and its step have ended"
}

@test "lock: a reused pid with another start time is not the holder" {
  start_sleeper
  bash "$H" lock-acquire "$L" tok1 "ana@srv" R1 - 7200 "$SLEEPER"
  sed -i 's/^step_start=.*/step_start=1/; s/^pid_start=.*/pid_start=1/' "$L/owner"
  run bash "$H" lock-acquire "$L" tok2 "bob@srv" R2 - 7200 "$(dead_pid)"
  assert_success
  assert_line --index 0 took-over
}

@test "lock: a holder from before the last reboot is gone" {
  start_sleeper
  bash "$H" lock-acquire "$L" tok1 "ana@srv" R1 - 7200 "$SLEEPER"
  sed -i 's/^boot_id=.*/boot_id=00000000-0000-0000-0000-000000000000/' "$L/owner"
  run bash "$H" lock-acquire "$L" tok2 "bob@srv" R2 - 7200 "$(dead_pid)"
  assert_success
  assert_line "reason=the server rebooted since"
}

@test "lock: one that records no process (older version) is held until older than the stale limit" {
  mkdir -m 700 "$L"
  printf 'token=old\nholder=ghost@laptop pid 1\nsince=%s\nstep=10_harden_host\n' "$(($(date +%s) - 100))" >"$L/owner"
  run bash "$H" lock-acquire "$L" tok2 "bob@srv" R2 - 7200 "$(dead_pid)"
  assert_failure 3
  assert_line alive=unknown
  run bash "$H" lock-acquire "$L" tok2 "bob@srv" R2 - 60 "$(dead_pid)"
  assert_success
  assert_line --index 0 took-over
  assert_line --partial "reason=it records no process and is older than the stale limit"
  assert_line "previous.holder=ghost@laptop pid 1"
}

@test "lock: a directory another user made, a symlink, a loose mode or a foreign owner file is refused and left alone" {
  if [ "$(id -u)" != 0 ]; then skip "needs root to make files of another uid"; fi
  mkdir -m 700 "$L"
  chown 65534 "$L"
  run bash "$H" lock-acquire "$L" tok "x" R - 7200 "$(dead_pid)"
  assert_failure 3
  assert_output "refused $L belongs to uid 65534, not root"
  [ -d "$L" ]
  chown 0 "$L"
  chmod 777 "$L"
  run bash "$H" lock-release "$L" tok
  assert_failure 3
  assert_output "refused $L has mode 777, not 700"
  chmod 700 "$L"
  printf 'token=tok\n' >"$L/owner"
  chown 65534 "$L/owner"
  run bash "$H" lock-release "$L" tok
  assert_failure 3
  assert_output "refused $L/owner is not a regular file owned by root"
  [ -f "$L/owner" ]
  rm -rf "$L"
  mkdir "$BASE/elsewhere"
  ln -s "$BASE/elsewhere" "$L"
  run bash "$H" lock-acquire "$L" tok "x" R - 7200 "$(dead_pid)"
  assert_failure 3
  assert_output --partial "is not a directory (a symlink or a file)"
  rm "$L"
  touch "$L.guard"
  chown 65534 "$L.guard"
  run bash "$H" lock-acquire "$L" tok "x" R - 7200 "$(dead_pid)"
  assert_failure 3
  assert_output "refused $L.guard is not a regular file owned by root"
}

@test "lock: a launcher's step records itself only while its token owns the lock; release is by token only" {
  start_sleeper
  bash "$H" lock-acquire "$L" tok1 "ana@srv" R1 - 7200 "$SLEEPER"
  run bash "$H" lock-step "$L" tok1 30_ingress_tls "$$"
  assert_success
  assert_output ok
  grep -qx step=30_ingress_tls "$L/owner"
  grep -qx "step_pid=$$" "$L/owner"
  grep -qx "pid=$SLEEPER" "$L/owner"
  run bash "$H" lock-step "$L" other 30_ingress_tls "$$"
  assert_failure 3
  assert_line --index 0 not-ours
  run bash "$H" lock-release "$L" other
  assert_output not-ours
  [ -d "$L" ]
  run bash "$H" lock-release "$L" tok1
  assert_output released
  [ ! -e "$L" ]
  run bash "$H" lock-step "$L" tok1 40_x "$$"
  assert_failure 3
  assert_output gone
}

@test "lock: concurrent takers of a free lock: exactly one wins" {
  start_sleeper
  for i in 1 2 3 4 5 6; do
    bash "$H" lock-acquire "$L" "tok$i" "h$i" "R$i" - 7200 "$SLEEPER" >"$BASE/out$i" 2>&1 &
  done
  wait_all() { local p; for p in $(jobs -p); do [ "$p" = "$SLEEPER" ] || wait "$p" || true; done; }
  wait_all
  run sh -c "grep -lx acquired '$BASE'/out* | wc -l"
  assert_output 1
  run sh -c "grep -lx held '$BASE'/out* | wc -l"
  assert_output 5
}
