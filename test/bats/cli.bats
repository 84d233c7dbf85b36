#!/usr/bin/env bats
# CLI behaviour of every script: --help, unknown flags, --dry-run touching nothing, validation errors.
# A fake ssh/curl/scp first on PATH records any attempt to reach a server; the dry run also runs in an
# empty network namespace when we can make one (root), so a network call could not succeed anyway.

load '../../node_modules/bats-support/load'
load '../../node_modules/bats-assert/load'

LAUNCHER=./bootstrap/host/bootstrap_remote_staging.mts

setup() {
  cd "$BATS_TEST_DIRNAME/../.." || exit 1
  FAKEBIN=$(mktemp -d)
  CALLS="$FAKEBIN/calls"
  for tool in ssh scp curl wget; do
    printf '#!/bin/sh\necho "%s $*" >>"%s"\nexit 99\n' "$tool" "$CALLS" >"$FAKEBIN/$tool"
    chmod +x "$FAKEBIN/$tool"
  done
  export PATH="$FAKEBIN:$PATH"
  # Keys for the validation cases that must get past file checks.
  KEYDIR=$(mktemp -d)
  printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n' >"$KEYDIR/id"
  chmod 600 "$KEYDIR/id"
  echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@laptop' >"$KEYDIR/id.pub"
  unset CODEXK8S_GITHUB_PAT
}

teardown() {
  rm -rf "$FAKEBIN" "$KEYDIR"
}

no_network_calls() {
  if [ -s "$CALLS" ]; then
    echo "unexpected calls:" >&2
    cat "$CALLS" >&2
    return 1
  fi
}

in_empty_netns() {
  if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare --net true 2>/dev/null; then
    unshare --net "$@"
  else
    "$@"
  fi
}

@test "launcher --help exits 0 and lists every flag" {
  run "$LAUNCHER" --help
  assert_success
  for flag in --help --env-file --dry-run --check --json --status --uninstall --confirm-host --purge-data --remove-operator --list --from --only --yes --verbose; do
    assert_output --partial -- "$flag"
  done
  assert_output --partial "Exit codes"
}

@test "launcher: an unknown flag exits 2 with the usage line" {
  run "$LAUNCHER" --frobnicate
  assert_failure 2
  assert_output --partial "unknown flag '--frobnicate'"
  assert_output --partial "Usage: ./bootstrap/host/bootstrap_remote_staging.mts"
  no_network_calls
}

@test "launcher: a flag without its value exits 2" {
  run "$LAUNCHER" --from
  assert_failure 2
  assert_output --partial "Usage:"
}

@test "launcher --list prints the steps in order" {
  run "$LAUNCHER" --list
  assert_success
  assert_line --index 0 --regexp '^01  00_preflight'
  assert_line --index 1 --regexp '^02  10_harden_host'
}

@test "dry run with .env.example prints every step and the plan, and touches no network" {
  run in_empty_netns "$LAUNCHER" --dry-run --env-file .env.example
  assert_success
  for f in bootstrap/remote/[0-9][0-9]_*.mts; do
    name=$(basename "$f" .mts)
    assert_output --regexp "==> \[[0-9]+/[0-9]+\] $name"
  done
  assert_output --partial "dry run: nothing is contacted"
  assert_output --partial "CODEXK8S_GITHUB_PAT"
  assert_output --partial "a real run asks for it"
  no_network_calls
  [ ! -d .bootstrap-logs ] || [ -z "$(find .bootstrap-logs -newer "$CALLS" 2>/dev/null)" ]
}

@test "dry run honours --from and --only" {
  run "$LAUNCHER" --dry-run --env-file .env.example --only 10
  assert_success
  assert_output --partial "==> [01/01] 10_harden_host"
  refute_output --partial "00_preflight"
}

@test "--check with --dry-run, or --json without --check: exit 2 naming both, nothing contacted" {
  run "$LAUNCHER" --check --dry-run --env-file .env.example
  assert_failure 2
  assert_output --partial '--check and --dry-run exclude each other'
  run "$LAUNCHER" --json --env-file .env.example
  assert_failure 2
  assert_output --partial '--json goes with --check'
  [ ! -e "$CALLS" ]
}

@test "--status with a flag that makes or plans a run, or with a bad setting: exit 2, nothing contacted" {
  for other in --check --dry-run "--from 20" "--only 40" "--restore-from x.age" "--backup $KEYDIR/b"; do
    # shellcheck disable=SC2086 # the flag and its value are two words on purpose
    run "$LAUNCHER" --status $other --env-file .env.example
    assert_failure 2
    assert_output --partial '--status runs alone'
  done
  run env TARGET_PORT=70000 "$LAUNCHER" --status --json --env-file .env.example --yes
  assert_failure 2
  assert_output --partial 'TARGET_PORT'
  [ ! -e "$CALLS" ]
  [ ! -e "$KEYDIR/b" ]
}

@test "--uninstall: with a flag of another run, without a confirmation, naming another host, or removing the login: exit 2, nothing contacted" {
  ssh-keygen -q -t ed25519 -N '' -C op@laptop -f "$KEYDIR/real"
  ok_env=(TARGET_ROOT_SSH_KEY="$KEYDIR/real" OPERATOR_SSH_PUBKEY_PATH="$KEYDIR/real.pub" OPERATOR_SSH_KEY="$KEYDIR/real" CODEXK8S_GITHUB_PAT=github_pat_aaaaaaaaaaaaaaaaaaaaaaaa)
  for other in --check --dry-run --status "--from 20" "--only 40" "--restore-from x.age" "--backup $KEYDIR/b"; do
    # shellcheck disable=SC2086 # the flag and its value are two words on purpose
    run "$LAUNCHER" --uninstall $other --env-file .env.example
    assert_failure 2
    assert_output --partial '--uninstall runs alone'
  done
  for flag in --purge-data --remove-operator "--confirm-host 203.0.113.10"; do
    # shellcheck disable=SC2086
    run "$LAUNCHER" $flag --env-file .env.example
    assert_failure 2
    assert_output --partial 'goes with --uninstall only'
  done
  run env "${ok_env[@]}" "$LAUNCHER" --uninstall --yes --env-file .env.example
  assert_failure 2
  assert_output --partial '--uninstall --yes needs --confirm-host 203.0.113.10'
  run env "${ok_env[@]}" "$LAUNCHER" --uninstall --yes --confirm-host 203.0.113.11 --env-file .env.example
  assert_failure 2
  assert_output --partial '--confirm-host 203.0.113.11: the settings name the server 203.0.113.10 (TARGET_HOST)'
  run env "${ok_env[@]}" "$LAUNCHER" --uninstall --env-file .env.example </dev/null
  assert_failure 2
  assert_output --partial 'there is no terminal; expected --yes --confirm-host 203.0.113.10'
  run env "${ok_env[@]}" TARGET_ROOT_USER=codex OPERATOR_USER=codex "$LAUNCHER" --uninstall --remove-operator --yes --confirm-host 203.0.113.10 --env-file .env.example
  assert_failure 2
  assert_output --partial 'would lock this tool out'
  no_network_calls
}

@test "--check with a bad step name exits 2 before any connection" {
  run "$LAUNCHER" --check --env-file .env.example --only 99_nope
  assert_failure 2
  assert_output --partial '--only: "99_nope" is not a step'
  [ ! -e "$CALLS" ]
}

@test "an unknown step name exits 2 and lists the real ones" {
  run "$LAUNCHER" --dry-run --env-file .env.example --from 99_nope
  assert_failure 2
  assert_output --partial '--from: "99_nope" is not a step; expected one of: 00_preflight, 10_harden_host'
}

@test "bad settings: every problem at once, exit 2, nothing contacted" {
  run env TARGET_HOST='root@bad host' TARGET_PORT=99999 CODEXK8S_GITHUB_REPO=nope CODEXK8S_MODE=server \
    TARGET_ROOT_SSH_KEY="$KEYDIR/id" OPERATOR_SSH_PUBKEY_PATH="$KEYDIR/id.pub" \
    "$LAUNCHER" --env-file .env.example --yes
  assert_failure 2
  assert_output --partial 'TARGET_HOST: "root@bad host" is not a host name or IP address'
  assert_output --partial 'TARGET_PORT: "99999" is not a valid port; expected an integer from 1 to 65535'
  assert_output --partial 'CODEXK8S_GITHUB_REPO: "nope" is not a repository; expected owner/name'
  assert_output --partial 'CODEXK8S_STAGING_DOMAIN: is not set; it is required in server mode'
  assert_output --partial 'CODEXK8S_GITHUB_PAT: is not set; it is a required secret'
  assert_output --partial 'nothing was contacted'
  no_network_calls
}

@test "ssh options that touch the pin, the control path or the destination, and values bootstrap.env cannot hold: exit 2, no trace" {
  printf '%s\n' "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl it's \"q\" \`t\`" >"$KEYDIR/odd.pub"
  local -A want=(['-S none']='option -S is not allowed' ['-o GlobalKnownHostsFile=/tmp/kh']='option GlobalKnownHostsFile is not allowed'
    ['-o Compression=yes evil.example.com']='"evil.example.com" is not an option: ssh would take it as the destination')
  for opts in "${!want[@]}"; do
    run env CODEXK8S_SSH_EXTRA_OPTS="$opts" TARGET_ROOT_SSH_KEY="$KEYDIR/id" OPERATOR_SSH_PUBKEY_PATH="$KEYDIR/odd.pub" \
      "$LAUNCHER" --dry-run --env-file .env.example
    assert_failure 2
    assert_output --partial "CODEXK8S_SSH_EXTRA_OPTS: ${want[$opts]}"
    assert_output --partial "OPERATOR_SSH_PUBKEY: the value cannot be written to the server's bootstrap.env unchanged (it contains all of ' \" \`)"
    refute_output --regexp '^ +at '
  done
  no_network_calls
}

@test "a bad secret is named but never echoed" {
  run env CODEXK8S_GITHUB_PAT='hunter2-is-my-password' TARGET_ROOT_SSH_KEY="$KEYDIR/id" OPERATOR_SSH_PUBKEY_PATH="$KEYDIR/id.pub" \
    "$LAUNCHER" --env-file .env.example --yes
  assert_failure 2
  assert_output --partial 'CODEXK8S_GITHUB_PAT: the value (hidden) does not look like a GitHub token'
  refute_output --partial 'hunter2'
  no_network_calls
}

@test "a missing --env-file exits 2" {
  run "$LAUNCHER" --dry-run --env-file /nonexistent/.env
  assert_failure 2
  assert_output --partial '--env-file /nonexistent/.env: the file does not exist'
}

@test "every remote step: --help exits 0 and says what it checks and changes" {
  for f in bootstrap/remote/[0-9][0-9]_*.mts; do
    run node --import tsx -- "$f" --help
    assert_success
    assert_output --partial "Usage: /opt/codex-k8s-bootstrap/bootstrap/remote/$(basename "$f")"
    assert_output --partial "Checks:"
    assert_output --partial "Changes:"
    assert_output --partial "--check"
  done
}

@test "every remote step: an unknown flag exits 2" {
  for f in bootstrap/remote/[0-9][0-9]_*.mts; do
    run node --import tsx -- "$f" --nope
    assert_failure 2
    assert_output --partial "unknown flag '--nope'"
  done
}

@test "a remote step with a missing config file exits 2 and names it" {
  run node --import tsx -- bootstrap/remote/00_preflight.mts --check --env-file /nonexistent/bootstrap.env
  assert_failure 2
  assert_output --partial "--env-file /nonexistent/bootstrap.env: the file does not exist"
}

@test "gen_config_docs: --help exits 0, --check passes on a clean tree" {
  run ./bootstrap/host/gen_config_docs.mts --help
  assert_success
  run ./bootstrap/host/gen_config_docs.mts --check
  assert_success
}

@test "pins: --help exits 0; prints every pin offline; a bad --today exits 2 naming the flag" {
  run ./bootstrap/host/pins.mts --help
  assert_success
  assert_output --partial "Usage: ./bootstrap/host/pins.mts"
  run ./bootstrap/host/pins.mts --today 2026-12-06
  assert_success
  assert_output --partial "ages as of 2026-12-06"
  run ./bootstrap/host/pins.mts --today yesterday
  assert_failure 2
  assert_output --partial "--today yesterday: not a date; expected YYYY-MM-DD"
}

@test "on a terminal, a missing secret is prompted for without echo, then validated like any other" {
  command -v script >/dev/null || skip "script(1) from util-linux is needed to fake a terminal"
  # script(1) gives the launcher a real pseudo-terminal. We type only once the prompt is on screen (raw mode is
  # on by then, so an echo would be the launcher's fault). The typed value is not a token: validation refuses it
  # (exit 2) before anything is contacted, and the typed characters never appear on the terminal.
  local tty_dir="$FAKEBIN/tty"
  mkdir "$tty_dir"
  mkfifo "$tty_dir/keys"
  exec 5<>"$tty_dir/keys"
  script -qfec "env TARGET_ROOT_SSH_KEY=$KEYDIR/id OPERATOR_SSH_PUBKEY_PATH=$KEYDIR/id.pub $LAUNCHER --env-file .env.example; echo \"launcher-exit:\$?\"" \
    "$tty_dir/screen" <&5 >/dev/null 2>&1 &
  local pid=$! i
  for i in $(seq 1 100); do
    grep -q 'CODEXK8S_GITHUB_PAT (' "$tty_dir/screen" 2>/dev/null && break
    sleep 0.1
  done
  printf 'typed-but-not-a-token\r' >&5
  for i in $(seq 1 100); do
    grep -q 'launcher-exit:[0-9]' "$tty_dir/screen" && break
    sleep 0.1
  done
  exec 5>&-
  kill "$pid" 2>/dev/null || true
  run cat "$tty_dir/screen"
  assert_output --partial 'CODEXK8S_GITHUB_PAT (Fine-grained personal access token'
  assert_output --partial 'CODEXK8S_GITHUB_PAT: the value (hidden) does not look like a GitHub token'
  assert_output --partial 'launcher-exit:2'
  refute_output --partial 'typed-but-not-a-token'
  no_network_calls
}

@test "with --yes, a missing secret is an error even on a terminal" {
  command -v script >/dev/null || skip "script(1) from util-linux is needed to fake a terminal"
  run script -qec "env TARGET_ROOT_SSH_KEY=$KEYDIR/id OPERATOR_SSH_PUBKEY_PATH=$KEYDIR/id.pub $LAUNCHER --env-file .env.example --yes </dev/null" /dev/null
  assert_output --partial 'CODEXK8S_GITHUB_PAT: is not set; it is a required secret'
  refute_output --partial 'Fine-grained personal access token for'
}

@test "a state or log directory setting that points at a file: exit 2 naming the setting, no trace" {
  touch "$KEYDIR/afile"
  mkdir -p "$KEYDIR/st" && touch "$KEYDIR/st/known_hosts"
  for s in CODEXK8S_HOST_STATE_DIR=$KEYDIR/afile CODEXK8S_HOST_LOG_DIR=$KEYDIR/afile CODEXK8S_HOST_STATE_DIR=$KEYDIR/st; do
    run env "$s" TARGET_ROOT_SSH_KEY="$KEYDIR/id" OPERATOR_SSH_PUBKEY_PATH="$KEYDIR/id.pub" CODEXK8S_GITHUB_PAT=github_pat_aaaaaaaaaaaaaaaaaaaaaaaa \
      "$LAUNCHER" --env-file .env.example --yes --only 00
    assert_failure 2
    assert_output --partial "${s%%=*}: "
    assert_output --partial "exists and is not a directory"
    refute_output --regexp '^ +at '
  done
  no_network_calls
}

@test "OPERATOR_SSH_KEY that is not the private half of OPERATOR_SSH_PUBKEY: exit 2 naming both, nothing contacted" {
  ssh-keygen -q -t ed25519 -N '' -f "$KEYDIR/op" -C one
  ssh-keygen -q -t ed25519 -N '' -f "$KEYDIR/other" -C two
  run env TARGET_ROOT_SSH_KEY="$KEYDIR/id" OPERATOR_SSH_PUBKEY_PATH="$KEYDIR/op.pub" OPERATOR_SSH_KEY="$KEYDIR/other" \
    CODEXK8S_GITHUB_PAT=github_pat_aaaaaaaaaaaaaaaaaaaaaaaa "$LAUNCHER" --env-file .env.example --yes --only 00
  assert_failure 2
  assert_output --partial "OPERATOR_SSH_KEY: $KEYDIR/other is not the private key of OPERATOR_SSH_PUBKEY"
  refute_output --regexp '^ +at '
  no_network_calls
}

@test "--backup and --restore-from: bad flags, a bad key setting, a missing bundle: exit 2, nothing contacted" {
  ssh-keygen -q -t ed25519 -N '' -C op@laptop -f "$KEYDIR/real"
  ok_env=(TARGET_ROOT_SSH_KEY="$KEYDIR/real" OPERATOR_SSH_PUBKEY_PATH="$KEYDIR/real.pub" CODEXK8S_GITHUB_PAT=github_pat_aaaaaaaaaaaaaaaaaaaaaaaa)
  run "$LAUNCHER" --backup "$KEYDIR/b" --check --env-file .env.example
  assert_failure 2
  assert_output --partial '--backup runs alone'
  run "$LAUNCHER" --restore-overwrite --env-file .env.example
  assert_failure 2
  assert_output --partial '--restore-overwrite goes with --restore-from'
  run "$LAUNCHER" --restore-from x.age --dry-run --env-file .env.example
  assert_failure 2
  assert_output --partial '--restore-from makes a run'
  run env "${ok_env[@]}" "$LAUNCHER" --restore-from x.age --only 50 --env-file .env.example --yes
  assert_failure 2
  assert_output --partial 'leave out 40_postgres, which restores the bundle'
  run env "${ok_env[@]}" "$LAUNCHER" --restore-from "$KEYDIR/nope.age" --env-file .env.example --yes
  assert_failure 2
  assert_output --partial "--restore-from $KEYDIR/nope.age: no such file"
  touch "$KEYDIR/afile"
  run env "${ok_env[@]}" "$LAUNCHER" --backup "$KEYDIR/afile" --env-file .env.example --yes
  assert_failure 2
  assert_output --partial 'exists and is not a directory'
  run env "${ok_env[@]}" "$LAUNCHER" --backup "$KEYDIR/b" --env-file .env.example --yes
  assert_failure 2
  assert_output --partial 'no CODEXK8S_BACKUP_AGE_RECIPIENT set and no terminal'
  run env "${ok_env[@]}" CODEXK8S_BACKUP_AGE_RECIPIENT=AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ \
    "$LAUNCHER" --backup "$KEYDIR/b" --env-file .env.example --yes
  assert_failure 2
  assert_output --partial 'CODEXK8S_BACKUP_AGE_RECIPIENT: this is an age SECRET key'
  refute_output --partial 'AGE-SECRET-KEY-1QQQ'
  [ ! -e "$KEYDIR/b" ]
  no_network_calls
}
