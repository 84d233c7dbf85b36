#!/usr/bin/env bash
# Server-side helpers of the launcher. They run BEFORE the pinned Node.js exists on the server, so they are
# plain bash + coreutils + curl + tar. The launcher sends this file as the script of `bash -c SCRIPT`
# over its SSH connection, with a subcommand and arguments; every path comes from bootstrap/lib/paths.mts.
#
#   begin LOCKDIR TOKEN HOLDER RUN STALE_SECONDS NODE_DIR TREE_HASH_FILE ENV_FILE JOURNAL
#                        one round trip at the start of a run: exit 4 unless root; takes the lock (see
#                        lock_acquire: exit 3 while another run's holder lives), then prints node=, tree=, env=
#                        and the journal
#   finish LOCKDIR TOKEN JOURNAL
#                        one round trip at the end: releases the lock if TOKEN owns it, prints the journal
#   lock-acquire LOCKDIR TOKEN HOLDER RUN STEP STALE_SECONDS PID   -> a step run by hand takes the lock
#   lock-step LOCKDIR TOKEN STEP PID          -> a launcher's step records itself in the lock
#   lock-release LOCKDIR TOKEN                -> removes the lock if TOKEN owns it (end of run, Ctrl-C)
#   ensure-node DEST VERSION URL_X64 SHA_X64 URL_ARM64 SHA_ARM64
#                                             -> "unchanged vX arch" | "installed vX arch"
#   install-tree BASE HASH ENTRY...           -> tar on stdin, swapped in entry by entry
#   write-private PATH                        -> stdin to PATH, 0600 before the first byte, atomic
#   status LOCKDIR JOURNAL DATADIR            -> --status: read-only, no lock taken; the lock's holder (no token),
#                                                disk under DATADIR, memory, then the journal
set -euo pipefail

die() { echo "remote_helpers: $*" >&2; exit 1; }

# ---- The run lock: the only implementation. bootstrap/lib/lock.mts parses and explains its answers. ----
# LOCKDIR is a root-owned 0700 directory with an `owner` file of key=value lines:
#   token holder since run step boot_id pid pid_start step_pid step_start
# pid is what keeps the lock alive: the server's sshd process of the launcher's connection (the first ancestor
# named sshd or sshd-session), or the step's own node process when a step was started by hand. step_pid is the step
# running now. *_start is the process's start time (field 22 of /proc/PID/stat), so a reused pid is not mistaken
# for the holder. Every transition (take, take over, record the step, release) runs under flock on LOCKDIR.guard,
# and a new lock appears complete, owner file inside, by one rename: no reader ever sees a lock without an owner.
# Answers (first line): acquired | took-over | held (exit 3) | refused (exit 3) | ok | released | absent | gone | not-ours

LOCK_GUARD_FD=9

owner_get() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n 1; }

# Start time of a process in clock ticks since boot; fails when it does not exist.
proc_start() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # The comm field may hold spaces and ")": the fixed fields start after its LAST ")".
  read -r -a fields <<<"${stat##*) }"
  printf '%s\n' "${fields[19]}"
}

# PID START: the process exists, is the one recorded (same start time), and is not a zombie. A killed step whose
# parent never reaps it (a sudo that stopped itself when its command was stopped) is dead, though /proc still has it.
proc_alive() {
  local stat fields
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r -a fields <<<"${stat##*) }"
  [ "${fields[0]}" != Z ] && [ "${fields[0]}" != X ] && [ "${fields[19]}" = "$2" ]
}

# The sshd process serving this connection: it lives exactly as long as the launcher's SSH connection.
connection_pid() {
  local pid=$$ stat fields
  while [ "$pid" -gt 1 ]; do
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in sshd | sshd-session) echo "$pid"; return 0 ;; esac
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    read -r -a fields <<<"${stat##*) }"
    pid=${fields[1]}
  done
  return 1
}

refuse() { echo "refused $*"; return 3; }

# /run/lock is world-writable: anything found there that root did not create is refused, never trusted.
lock_guard() {
  local guard=$1.guard
  if [ -L "$guard" ] || { [ -e "$guard" ] && { [ ! -f "$guard" ] || [ "$(stat -c %u "$guard")" != 0 ]; }; }; then
    refuse "$guard is not a regular file owned by root"
    return
  fi
  eval "exec $LOCK_GUARD_FD>>\"\$guard\""
  [ "$(stat -L -c %u "/dev/fd/$LOCK_GUARD_FD")" = 0 ] || { refuse "$guard is not owned by root"; return; }
  flock -w 60 "$LOCK_GUARD_FD" || refuse "$guard stayed locked for 60 s by another run's lock transition"
}

lock_check_dir() {
  local dir=$1
  [ -e "$dir" ] || [ -L "$dir" ] || return 0
  if [ -L "$dir" ] || [ ! -d "$dir" ]; then refuse "$dir is not a directory (a symlink or a file)"; return; fi
  [ "$(stat -c %u "$dir")" = 0 ] || { refuse "$dir belongs to uid $(stat -c %u "$dir"), not root"; return; }
  [ "$(stat -c %a "$dir")" = 700 ] || { refuse "$dir has mode $(stat -c %a "$dir"), not 700"; return; }
  if [ -e "$dir/owner" ] || [ -L "$dir/owner" ]; then
    if [ -L "$dir/owner" ] || [ ! -f "$dir/owner" ] || [ "$(stat -c %u "$dir/owner")" != 0 ]; then
      refuse "$dir/owner is not a regular file owned by root"
      return
    fi
  fi
}

# Is the holder of the existing lock alive? "alive step PID" | "alive connection PID" | "gone WHY" | "unknown"
lock_holder_state() {
  local f=$1/owner boot pid pstart spid sstart
  boot=$(owner_get "$f" boot_id) pid=$(owner_get "$f" pid) pstart=$(owner_get "$f" pid_start)
  spid=$(owner_get "$f" step_pid) sstart=$(owner_get "$f" step_start)
  # Written by a version that recorded no process (or no owner file at all): only its age can tell.
  if [ -z "$boot" ] || { [ -z "$pid" ] && [ -z "$spid" ]; }; then echo unknown; return; fi
  if [ "$boot" != "$(cat /proc/sys/kernel/random/boot_id)" ]; then echo "gone the server rebooted since"; return; fi
  if proc_alive "$spid" "$sstart"; then echo "alive step $spid"; return; fi
  if proc_alive "$pid" "$pstart"; then echo "alive connection $pid"; return; fi
  echo "gone its connection and its step have ended"
}

write_owner() { # FILE token holder since run step pid pid_start step_pid step_start
  printf 'token=%s\nholder=%s\nsince=%s\nrun=%s\nstep=%s\nboot_id=%s\npid=%s\npid_start=%s\nstep_pid=%s\nstep_start=%s\n' \
    "$2" "${3//$'\n'/ }" "$4" "$5" "$6" "$(cat /proc/sys/kernel/random/boot_id)" "$7" "$8" "$9" "${10}" >"$1"
}

start_of() { if [ -n "$1" ]; then proc_start "$1" || true; fi; }

# lock_acquire DIR TOKEN HOLDER RUN STEP STALE_SECONDS WHO
#   WHO=connection: the launcher (kept alive by its SSH connection); WHO=PID: a step run by hand, as that process.
lock_acquire() {
  local dir=$1 token=$2 holder=$3 run=$4 step=$5 stale=$6 who=$7 pid spid='' state reason='' since age tries=0 tmp previous=''
  mkdir -p "$(dirname "$dir")"
  lock_guard "$dir" || return 3
  lock_check_dir "$dir" || return 3
  if [ "$who" = connection ]; then pid=$(connection_pid || true); else pid=$who spid=$who; fi
  if [ -e "$dir" ]; then
    state=$(lock_holder_state "$dir")
    # A connection that was just closed (its launcher died and this run swept its SSH master) ends within moments.
    while [ "${state% *}" = "alive connection" ] && [ "$tries" -lt 10 ]; do
      sleep 0.5
      tries=$((tries + 1))
      state=$(lock_holder_state "$dir")
    done
    case "$state" in
      alive*)
        printf 'held\nnow=%s\nalive=%s\n' "$(date +%s)" "${state#alive }"
        cat "$dir/owner"
        return 3
        ;;
      gone*) reason=${state#gone } ;;
      unknown)
        since=$(owner_get "$dir/owner" since)
        [[ $since =~ ^[0-9]+$ ]] && [ "$since" -gt 0 ] || since=$(stat -c %Y "$dir")
        age=$(($(date +%s) - since))
        if [ "$age" -le "$stale" ]; then
          printf 'held\nnow=%s\nalive=unknown\n' "$(date +%s)"
          if [ -f "$dir/owner" ]; then cat "$dir/owner"; else printf 'holder=unknown (no owner file)\nsince=%s\n' "$since"; fi
          return 3
        fi
        reason="it records no process and is older than the stale limit (${age}s > ${stale}s)"
        ;;
    esac
    previous=$(cat "$dir/owner" 2>/dev/null || true)
    rm -rf "$dir"
  fi
  tmp=$(mktemp -d "$dir.new.XXXXXX")
  write_owner "$tmp/owner" "$token" "$holder" "$(date +%s)" "$run" "$step" "$pid" "$(start_of "$pid")" "$spid" "$(start_of "$spid")"
  mv -T "$tmp" "$dir"
  if [ -n "$reason" ]; then
    printf 'took-over\nreason=%s\n' "$reason"
    printf '%s\n' "$previous" | sed -n 's/^\([a-z_]*=\)/previous.\1/p'
  else
    echo acquired
  fi
}

# lock_step DIR TOKEN STEP PID: the launcher's step records itself as the running step, if TOKEN still owns the lock.
lock_step() {
  local dir=$1 token=$2 step=$3 spid=$4 f=$1/owner
  lock_guard "$dir" || return 3
  lock_check_dir "$dir" || return 3
  [ -f "$f" ] || { echo gone; return 3; }
  if [ "$(owner_get "$f" token)" != "$token" ]; then echo not-ours; cat "$f"; return 3; fi
  write_owner "$f.tmp" "$token" "$(owner_get "$f" holder)" "$(owner_get "$f" since)" "$(owner_get "$f" run)" "$step" \
    "$(owner_get "$f" pid)" "$(owner_get "$f" pid_start)" "$spid" "$(start_of "$spid")"
  mv "$f.tmp" "$f"
  echo ok
}

lock_release() {
  local dir=$1 token=$2
  lock_guard "$dir" || return 3
  lock_check_dir "$dir" || return 3
  [ -d "$dir" ] || { echo absent; return 0; }
  if [ "$(owner_get "$dir/owner" token)" = "$token" ]; then
    rm -rf "$dir"
    echo released
  else
    echo not-ours
  fi
}

# The installed runtime's version, from the stamp written after a verified install (no process start).
node_stamp() {
  if [ -x "$1/bin/node" ]; then cat "$1/.codex-k8s-version" 2>/dev/null || true; fi
}

begin() {
  local lockdir=$1 token=$2 holder=$3 run=$4 stale=$5 node=$6 treefile=$7 envfile=$8 journal=$9
  # Everything after this needs root: refuse before taking the lock, so a wrong user changes nothing.
  [ "$(id -u)" = 0 ] || { echo "not-root uid=$(id -u) user=$(id -un)"; return 4; }
  lock_acquire "$lockdir" "$token" "$holder" "$run" - "$stale" connection || return $?
  printf 'node=%s\n' "$(node_stamp "$node")"
  printf 'tree=%s\n' "$(cat "$treefile" 2>/dev/null || true)"
  printf 'env=%s\n' "$(if [ -f "$envfile" ]; then sha256sum "$envfile" | cut -d' ' -f1; fi)"
  echo '--- journal'
  cat "$journal" 2>/dev/null || true
}

finish() {
  local lockdir=$1 token=$2 journal=$3
  lock_release "$lockdir" "$token"
  echo '--- journal'
  cat "$journal" 2>/dev/null || true
}

# --status: reads only. The lock is looked at, never taken (a run may be going on); its token is not printed.
status() {
  local lockdir=$1 journal=$2 datadir=$3 state
  [ "$(id -u)" = 0 ] || { echo "not-root uid=$(id -u) user=$(id -un)"; return 4; }
  printf 'now=%s\n' "$(date +%s)"
  if [ -f "$lockdir/owner" ]; then
    state=$(lock_holder_state "$lockdir")
    printf 'lock=%s\n' "$state"
    sed -n 's/^\(holder\|since\|run\|step\)=/lock.\1=/p' "$lockdir/owner"
  else
    echo 'lock=free'
  fi
  # df -B1 --output: size and available bytes of the file system that holds k3s, PostgreSQL and the registry.
  df -B1 --output=size,avail "$datadir" 2>/dev/null | awk 'NR==2 {print "disk_bytes=" $1; print "disk_avail_bytes=" $2}'
  awk '/^MemTotal:/ {print "mem_kib=" $2} /^MemAvailable:/ {print "mem_avail_kib=" $2}' /proc/meminfo
  echo '--- journal'
  cat "$journal" 2>/dev/null || true
}

ensure_node() {
  local dest=$1 version=$2 arch url sha machine
  machine=$(uname -m)
  case "$machine" in
    x86_64) arch=x64 url=$3 sha=$4 ;;
    aarch64 | arm64) arch=arm64 url=$5 sha=$6 ;;
    *) die "unsupported CPU architecture $machine; expected x86_64 or aarch64" ;;
  esac
  if [ "$(node_stamp "$dest")" = "v$version" ] && [ "$("$dest/bin/node" --version 2>/dev/null || true)" = "v$version" ]; then
    echo "unchanged v$version $arch"
    return 0
  fi
  command -v curl >/dev/null || die "curl is missing on the server (apt-get install -y curl)"
  command -v xz >/dev/null || die "xz is missing on the server (apt-get install -y xz-utils)"
  mkdir -p "$(dirname "$dest")"
  local tmp
  tmp=$(mktemp -d "$(dirname "$dest")/.node-download.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
  trap "rm -rf '$tmp'" EXIT
  curl -fsSL --retry 3 --connect-timeout 20 --max-time 900 -o "$tmp/node.tar.xz" "$url" ||
    die "download failed: $url"
  local got
  got=$(sha256sum "$tmp/node.tar.xz" | cut -d' ' -f1)
  [ "$got" = "$sha" ] || die "checksum mismatch for $url: expected $sha, got $got. Nothing was installed."
  mkdir "$tmp/node"
  tar -xJf "$tmp/node.tar.xz" -C "$tmp/node" --strip-components=1 --no-same-owner
  [ "$("$tmp/node/bin/node" --version)" = "v$version" ] || die "the tarball from $url does not contain Node.js v$version"
  rm -rf "$dest.old"
  if [ -e "$dest" ]; then mv "$dest" "$dest.old"; fi
  printf 'v%s\n' "$version" >"$tmp/node/.codex-k8s-version"
  mv "$tmp/node" "$dest"
  rm -rf "$dest.old"
  echo "installed v$version $arch"
}

install_tree() {
  local base=$1 hash=$2
  shift 2
  mkdir -p "$base"
  local tmp
  tmp=$(mktemp -d "$base/.incoming.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  tar -xf - -C "$tmp" --no-same-owner
  local entry
  for entry in "$@"; do
    [ -e "$tmp/$entry" ] || die "upload is missing $entry"
  done
  for entry in "$@"; do
    rm -rf "${base:?}/$entry.old"
    if [ -e "$base/$entry" ]; then mv "$base/$entry" "$base/$entry.old"; fi
    mv "$tmp/$entry" "$base/$entry"
    rm -rf "${base:?}/$entry.old"
  done
  printf '%s\n' "$hash" >"$base/.tree-sha256"
  echo installed
}

write_private() {
  local path=$1
  umask 077
  mkdir -p "$(dirname "$path")"
  chmod 700 "$(dirname "$path")"
  cat >"$path.tmp"
  chmod 600 "$path.tmp"
  mv "$path.tmp" "$path"
  echo written
}

cmd=${1:-}
[ -n "$cmd" ] || die "no subcommand"
shift
case "$cmd" in
  begin) begin "$@" ;;
  finish) finish "$@" ;;
  lock-acquire) lock_acquire "$@" ;;
  lock-step) lock_step "$@" ;;
  lock-release) lock_release "$@" ;;
  ensure-node) ensure_node "$@" ;;
  install-tree) install_tree "$@" ;;
  write-private) write_private "$@" ;;
  status) status "$@" ;;
  *) die "unknown subcommand $cmd" ;;
esac
