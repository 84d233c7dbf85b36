#!/usr/bin/env bash
# Server-side helpers of the launcher. They run BEFORE the pinned Node.js exists on the server, so they are
# plain bash + coreutils + curl + tar. The launcher sends this file as the script of `bash -c SCRIPT`
# over its SSH connection, with a subcommand and arguments; every path comes from bootstrap/lib/paths.mts.
#
#   begin LOCKDIR TOKEN HOLDER NODE_DIR TREE_HASH_FILE ENV_FILE JOURNAL
#                        one round trip at the start of a run: exit 4 unless root; takes the lock ("held" +
#                        owner lines and exit 3 when another run has it), then prints node=, tree=, env= and
#                        the journal
#   finish LOCKDIR TOKEN JOURNAL
#                        one round trip at the end: releases the lock if TOKEN owns it, prints the journal
#   lock-release LOCKDIR TOKEN                -> removes the lock if TOKEN owns it (used on Ctrl-C)
#   ensure-node DEST VERSION URL_X64 SHA_X64 URL_ARM64 SHA_ARM64
#                                             -> "unchanged vX arch" | "installed vX arch"
#   install-tree BASE HASH ENTRY...           -> tar on stdin, swapped in entry by entry
#   write-private PATH                        -> stdin to PATH, 0600 before the first byte, atomic
set -euo pipefail

die() { echo "remote_helpers: $*" >&2; exit 1; }

lock_acquire() {
  local dir=$1 token=$2 holder=$3
  mkdir -p "$(dirname "$dir")"
  if mkdir -m 0700 "$dir" 2>/dev/null; then
    printf 'token=%s\nholder=%s\nsince=%s\nstep=-\n' "$token" "$holder" "$(date +%s)" >"$dir/owner.tmp"
    mv "$dir/owner.tmp" "$dir/owner"
    echo acquired
    return 0
  fi
  echo held
  echo "now=$(date +%s)"
  cat "$dir/owner" 2>/dev/null || printf 'holder=unknown (no owner file)\nsince=0\n'
  return 3
}

lock_release() {
  local dir=$1 token=$2
  [ -d "$dir" ] || { echo absent; return 0; }
  if grep -qx "token=$token" "$dir/owner" 2>/dev/null; then
    rm -rf "$dir"
    echo released
  else
    echo "not-ours"
  fi
}

# The installed runtime's version, from the stamp written after a verified install (no process start).
node_stamp() {
  if [ -x "$1/bin/node" ]; then cat "$1/.codex-k8s-version" 2>/dev/null || true; fi
}

begin() {
  local lockdir=$1 token=$2 holder=$3 node=$4 treefile=$5 envfile=$6 journal=$7
  # Everything after this needs root: refuse before taking the lock, so a wrong user changes nothing.
  [ "$(id -u)" = 0 ] || { echo "not-root uid=$(id -u) user=$(id -un)"; return 4; }
  lock_acquire "$lockdir" "$token" "$holder" || return $?
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
  lock-release) lock_release "$@" ;;
  ensure-node) ensure_node "$@" ;;
  install-tree) install_tree "$@" ;;
  write-private) write_private "$@" ;;
  *) die "unknown subcommand $cmd" ;;
esac
