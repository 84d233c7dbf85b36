#!/usr/bin/env bash
# sandbox.sh: a disposable Debian 12 server with real systemd, sshd, users, sudo and nftables, for the tests.
#
# Usage: sandbox.sh preflight
#        sandbox.sh build
#        sandbox.sh up NAME INDEX|auto
#        sandbox.sh exec NAME -- CMD [ARG...]
#        sandbox.sh rekey NAME
#        sandbox.sh down NAME
#        sandbox.sh list
#
# How it works (see /work/shared/sandbox-notes.md for what was tried on the test machine):
#   build  debootstrap --variant=minbase a bookworm root filesystem with the packages of packages.txt, customise it
#          (no network timers, no baked host keys), and cache it as a tarball plus an extracted tree, keyed by the
#          sha256 of packages.txt and ROOTFS_REV below. Nothing happens when the cache already has it.
#   up     in a private mount namespace, put a tmpfs overlay on top of the cached tree (the cached tree is the
#          read-only lowerdir; every write of the sandbox lands in the tmpfs), write the per-boot identity (hostname,
#          address, fresh SSH host key, root's authorized_keys, the test doubles of $SANDBOX_OVERLAY_DIR), and boot it
#          with systemd-nspawn in its own network namespace, linked to the host by a veth pair:
#              host  vcks<INDEX> 10.200.<INDEX>.1/30  <---- veth ---->  host0 10.200.<INDEX>.2/30  sandbox
#          then wait until a real `ssh root@10.200.<INDEX>.2` logs in, and write $RUN/NAME/env.
#   exec   run a command in the sandbox through its namespaces (nsenter), without SSH: no login, no journal entry.
#   rekey  give the sandbox's sshd a new host key (tests of a changed host key).
#   down   power off (bounded), kill what is left, remove cgroups, the veth and the run directory. Idempotent.
#
# Nothing here touches the host's own sshd, users, /etc, firewall or addresses: the sandbox's files live in a tmpfs
# that only its mount namespace sees, its firewall and addresses live in its own network namespace, and the only
# host-side changes are the veth's host end (with a 10.200.INDEX.1/30 address), two cgroup directories and the run
# and cache directories; `down` removes all but the cache.
#
# Environment:
#   CODEXK8S_SANDBOX_CACHE  cache of root filesystems        (default /var/cache/codex-k8s-sandbox)
#   CODEXK8S_SANDBOX_RUN    per-sandbox run directories      (default /run/codex-k8s-sandbox)
#   SANDBOX_OVERLAY_DIR     up: files copied into the sandbox root, relative paths and modes kept, owned by root
#   SANDBOX_HOST_KEY        up: an ed25519 private host key to reuse instead of a fresh one
#   SANDBOX_BOOT_TIMEOUT    up: seconds to wait for an SSH login (default 30)
#   SANDBOX_TMPFS_SIZE      up: size of the tmpfs that takes the sandbox's writes (default 2g)
#   SANDBOX_DOWN_GRACE      down: seconds to wait for a clean poweroff before SIGKILL (default 5; 0 kills at once)
#   SANDBOX_MIRROR          build: Debian mirror (default: the URIs: line of /etc/apt/sources.list.d/debian.sources)
#
# Exit codes: 0 ok, 1 failure (with a message on stderr), 2 usage, 3 `up` with an explicit INDEX that is taken;
# `exec` passes the command's exit code through.
set -euo pipefail

# Bump when customise_rootfs (or anything else that shapes the cached tree) changes: it is part of the cache key.
readonly ROOTFS_REV=2
readonly SUITE=bookworm
SELF=$(readlink -f "${BASH_SOURCE[0]}")
readonly SELF
readonly HERE=${SELF%/*}
readonly PACKAGES_FILE=$HERE/packages.txt
readonly CACHE_DIR=${CODEXK8S_SANDBOX_CACHE:-/var/cache/codex-k8s-sandbox}
readonly RUN_DIR=${CODEXK8S_SANDBOX_RUN:-/run/codex-k8s-sandbox}
readonly NET_PREFIX=10.200      # each sandbox gets the /30 10.200.INDEX.0/30
readonly MAX_INDEX=63
readonly IFACE_PREFIX=vcks      # host end of the veth: vcks<INDEX> (at most 15 characters, unlike ve-<NAME>)
readonly CGROUP_GROUP=codex-k8s-sandbox
readonly SANDBOX_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'sandbox: %s\n' "$*" >&2; }
die() {
  printf 'sandbox: error: %s\n' "$*" >&2
  exit 1
}
usage() {
  sed -n '2,10p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------------------------------
# preflight
# ---------------------------------------------------------------------------------------------------------------------

# Everything the sandbox needs from this machine. Prints every missing piece with the apt package that provides it.
cmd_preflight() {
  local -a missing=()
  local cmd pkg
  if [[ $EUID -ne 0 ]]; then
    missing+=("root: run as root (the sandbox creates mount and network namespaces, cgroups and a veth pair)")
  fi
  while read -r cmd pkg; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("command '$cmd' (apt package: $pkg)")
  done <<'EOF'
unshare util-linux
nsenter util-linux
flock util-linux
setsid util-linux
mountpoint util-linux
systemd-nspawn systemd-container
systemctl systemd
debootstrap debootstrap
ip iproute2
ssh openssh-client
ssh-keygen openssh-client
ssh-keyscan openssh-client
tar tar
gzip gzip
sha256sum coreutils
timeout coreutils
EOF
  if ! grep -qw overlay /proc/filesystems; then
    missing+=("overlayfs: 'overlay' is not in /proc/filesystems (load the kernel module: modprobe overlay)")
  fi
  if [[ -z $(cgroup_roots) ]]; then
    missing+=("cgroups: neither /sys/fs/cgroup/cgroup.controllers (v2) nor /sys/fs/cgroup/systemd + /sys/fs/cgroup/unified (v1 hybrid) exist")
  fi
  # Only when the tools are there: prove that namespaces, tmpfs + overlay and veth pairs really work here (inside
  # throw-away namespaces, so nothing of this touches the host). Containers without CAP_SYS_ADMIN fail here.
  if ((${#missing[@]} == 0)); then
    local probe out
    probe=$(mktemp -d /tmp/codex-k8s-sandbox-probe.XXXXXX)
    # shellcheck disable=SC2016 # $1 expands in the inner bash
    if ! out=$(unshare --mount --net --propagation private -- bash -c '
        set -e
        mount -t tmpfs probe "$1"
        mkdir "$1/lower" "$1/upper" "$1/work" "$1/merged"
        mount -t overlay overlay -o "lowerdir=$1/lower,upperdir=$1/upper,workdir=$1/work" "$1/merged"
        ip link add probe0 type veth peer name probe1' _ "$probe" 2>&1); then
      missing+=("namespaces: could not mount a tmpfs + overlay and create a veth pair in a private namespace: ${out:-unknown error} (needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN, not an unprivileged container)")
    fi
    rmdir "$probe"
  fi
  if ((${#missing[@]})); then
    {
      echo "sandbox: preflight failed: this machine cannot run the test sandbox (systemd-nspawn). Missing:"
      printf '  - %s\n' "${missing[@]}"
      if [[ ${missing[*]} == *"apt package"* ]]; then
        echo "All of them on Debian/Ubuntu: apt-get install -y systemd-container debootstrap openssh-client iproute2 util-linux"
      fi
    } >&2
    exit 1
  fi
}

# Which cgroup hierarchies nspawn will use. cgroup v1 "hybrid" (this machine): the named systemd hierarchy plus the
# v2 one at /sys/fs/cgroup/unified. Pure v2: /sys/fs/cgroup itself.
cgroup_roots() {
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    echo /sys/fs/cgroup
  elif [[ -d /sys/fs/cgroup/systemd ]]; then
    echo /sys/fs/cgroup/systemd
    if [[ -f /sys/fs/cgroup/unified/cgroup.controllers ]]; then echo /sys/fs/cgroup/unified; fi
  fi
}

# ---------------------------------------------------------------------------------------------------------------------
# build: the cached root filesystem
# ---------------------------------------------------------------------------------------------------------------------

package_list() { sed 's/#.*//' "$PACKAGES_FILE" | tr -s '[:blank:]' '\n' | sed '/^$/d'; }

cache_key() {
  { cat "$PACKAGES_FILE"; printf 'rootfs-rev=%s suite=%s variant=minbase\n' "$ROOTFS_REV" "$SUITE"; } |
    sha256sum | cut -c1-16
}

# The Debian mirror this machine's apt uses (never written into the repository): the first URI of the stanza of
# /etc/apt/sources.list.d/debian.sources whose Suites: has the plain suite, else a `deb URL SUITE` line.
read_mirror() {
  if [[ -n ${SANDBOX_MIRROR:-} ]]; then
    echo "$SANDBOX_MIRROR"
    return
  fi
  local mirror=''
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    mirror=$(awk -v suite="$SUITE" 'BEGIN { RS = "" }
      { uri = ""; ok = 0
        n = split($0, lines, "\n")
        for (i = 1; i <= n; i++) {
          if (lines[i] ~ /^URIs:/) { split(lines[i], f, /[ \t]+/); uri = f[2] }
          if (lines[i] ~ /^Suites:/) { m = split(lines[i], s, /[ \t]+/); for (j = 2; j <= m; j++) if (s[j] == suite) ok = 1 }
        }
        if (ok && uri != "") { print uri; exit } }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
    mirror=$(awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list)
  fi
  [[ -n $mirror ]] || die "cannot find the Debian mirror for '$SUITE' in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; set SANDBOX_MIRROR"
  echo "$mirror"
}

# Refuse to rm -rf a directory that has anything mounted below it (an interrupted debootstrap could have left
# /proc, /sys or a bind mount of the host's /dev there: removing through that would damage the host).
safe_rm_rf() {
  local dir=$1
  [[ -e $dir ]] || return 0
  if awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    die "refusing to remove $dir: something is mounted below it (see /proc/self/mounts); unmount it first"
  fi
  rm -rf --one-file-system -- "$dir"
}

# The rootfs customisation (part of the cache key through ROOTFS_REV). $1 is the root directory.
customise_rootfs() {
  local root=$1 unit
  # Host keys are per boot (`up` writes a fresh one): none in the cache. Only ed25519 is used, so say so
  # (otherwise sshd complains about the missing RSA and ECDSA default keys on every start). Appended to the main
  # file, so the drop-ins of sshd_config.d (which the steps write, Include'd at its top) still come first.
  rm -f "$root"/etc/ssh/ssh_host_*
  printf '\n# codex-k8s sandbox: one host key, written per boot by test/sandbox/sandbox.sh\nHostKey /etc/ssh/ssh_host_ed25519_key\n' \
    >>"$root/etc/ssh/sshd_config"
  rm -rf "$root/root/.ssh"
  # Per-boot identity is written by `up`; these are neutral defaults. debootstrap copied the host's resolv.conf and
  # hostname: do not keep them.
  echo sandbox >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  echo 'nameserver 127.0.0.1' >"$root/etc/resolv.conf"
  # As on Ubuntu (and quiets pam_env at every SSH login).
  echo 'LANG=C.UTF-8' >"$root/etc/default/locale"
  # An empty machine-id: each boot gets its own (nspawn hands the container a random UUID).
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  # Nothing at boot may try the network (there is none) or slow the boot. Disabled, not masked, so a step that
  # enables one of them still can.
  for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
    man-db.timer logrotate.timer fail2ban.service; do
    if [[ -e $root/lib/systemd/system/$unit ]]; then
      systemctl --root="$root" --quiet disable "$unit" 2>/dev/null || true
    fi
  done
  # fail2ban is installed (the sandbox cannot download it) but not running: on bookworm its stock sshd jail wants
  # /var/log/auth.log (no rsyslog here) and fails at boot; the hardening step configures and starts it.
  # A login prompt on the console is useless here (nobody types into it) and only fills the console log.
  systemctl --root="$root" --quiet mask console-getty.service getty@.service serial-getty@.service
  # Static address on host0 (the file itself is written per boot), ssh on at boot.
  systemctl --root="$root" --quiet enable systemd-networkd.service ssh.service
  rm -f "$root"/var/cache/apt/archives/*.deb
  printf 'codex-k8s sandbox rootfs: suite=%s rev=%s key=%s\n' "$SUITE" "$ROOTFS_REV" "$(cache_key)" \
    >"$root/etc/codex-k8s-sandbox-release"
}

cmd_build() {
  cmd_preflight
  build_tarball
}

# Prints the tarball path. Idempotent; safe against concurrent builds (flock) and interrupted ones (temp + rename).
build_tarball() {
  local key tarball rootfs tmp mirror packages started
  key=$(cache_key)
  tarball=$CACHE_DIR/rootfs-$key.tar.gz
  rootfs=$CACHE_DIR/rootfs-$key
  if [[ -f $tarball ]]; then
    prune_cache "$key"
    echo "$tarball"
    return
  fi
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.build.lock"
  flock 8 # a concurrent build of the same key waits here, then finds the tarball
  if [[ -f $tarball ]]; then
    echo "$tarball"
    return
  fi
  local leftover
  for leftover in "$CACHE_DIR"/build.*; do safe_rm_rf "$leftover"; done
  mirror=$(read_mirror)
  packages=$(package_list | paste -sd, -)
  tmp=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
  started=$SECONDS
  log "building the sandbox root filesystem $key (debootstrap $SUITE from $mirror, 2-3 minutes) in $tmp"
  # debootstrap mounts /proc and /sys into the target: run it in a private mount namespace so that whatever it leaves
  # mounted (on failure) disappears with it instead of staying mounted on the host.
  if ! unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include="$packages" "$SUITE" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -n 30 "$tmp/debootstrap.log" >&2 || true
    die "debootstrap failed (full log: $tmp/debootstrap.log)"
  fi
  customise_rootfs "$tmp/root"
  log "debootstrap + customisation took $((SECONDS - started)) s; writing $tarball"
  tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$tmp/root" -czf "$tmp/rootfs.tar.gz" .
  # The built tree doubles as the extracted lowerdir, so `up` does not extract it again.
  safe_rm_rf "$rootfs"
  mv "$tmp/root" "$rootfs"
  mv "$tmp/rootfs.tar.gz" "$tarball"
  safe_rm_rf "$tmp"
  log "built in $((SECONDS - started)) s"
  prune_cache "$key"
  echo "$tarball"
}

# Removes the cached root filesystems of other keys (an older packages.txt or ROOTFS_REV), except those that a
# sandbox still uses as its lowerdir.
prune_cache() {
  local keep=$1 entry in_use
  in_use=$(sed -n 's/^BOOT_LOWER=//p' "$RUN_DIR"/*/boot.conf 2>/dev/null || true)
  for entry in "$CACHE_DIR"/rootfs-*; do
    [[ -e $entry && $entry != "$CACHE_DIR/rootfs-$keep" && $entry != "$CACHE_DIR/rootfs-$keep.tar.gz" ]] || continue
    if grep -qxF "${entry%.tar.gz}" <<<"$in_use"; then continue; fi
    log "removing the outdated cache entry $entry"
    safe_rm_rf "$entry"
  done
}

# The extracted tree that `up` uses read-only as the overlay's lowerdir (extracted once from the tarball).
# Prints its path.
ensure_rootfs() {
  local tarball key rootfs tmp
  tarball=$(build_tarball)
  key=$(cache_key)
  rootfs=$CACHE_DIR/rootfs-$key
  if [[ ! -d $rootfs ]]; then
    exec 8>"$CACHE_DIR/.build.lock"
    flock 8
    if [[ ! -d $rootfs ]]; then
      tmp=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
      mkdir "$tmp/root"
      tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$tmp/root" -xzf "$tarball"
      mv "$tmp/root" "$rootfs"
      safe_rm_rf "$tmp"
    fi
    exec 8>&-
  fi
  echo "$rootfs"
}

# ---------------------------------------------------------------------------------------------------------------------
# up / down / exec / rekey
# ---------------------------------------------------------------------------------------------------------------------

check_name() {
  [[ $1 =~ ^[a-z][a-z0-9-]{0,39}$ ]] ||
    die "invalid sandbox name '$1': want a lowercase letter, then up to 39 of [a-z0-9-] (it becomes the hostname)"
}

# True when $1 is the live `unshare ... sandbox.sh __boot NAME` of sandbox $2 (guards against reused PIDs: the run
# directory may outlive a reboot when /run is not a tmpfs).
is_sandbox_pid() {
  local pid=$1 name=$2 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *unshare*" __boot $name " ]]
}

# True when process $1 exists and is not a zombie. Zombies matter: the unshare process is detached, so its parent
# is PID 1, and a PID 1 that is not systemd (this test machine's) may take seconds to reap it.
pid_alive() {
  local stat
  [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
  stat=$(cat 2>/dev/null "/proc/$1/stat") || return 1
  stat=${stat##*) } # the state follows "(comm) ", and comm may contain spaces and parentheses
  [[ ${stat:0:1} != Z ]]
}

# Index claims: $RUN_DIR/.index/N is a directory (mkdir is atomic) with the owner's name and the PID of the `up`
# that claimed it. A claim is stale when neither that `up` nor the sandbox is alive.
claim_index() {
  local i=$1 name=$2 claim=$RUN_DIR/.index/$1 owner claimer
  mkdir -p "$RUN_DIR/.index"
  if ! mkdir "$claim" 2>/dev/null; then
    owner=$(cat "$claim/name" 2>/dev/null || true)
    claimer=$(cat "$claim/claimer" 2>/dev/null || true)
    if [[ -z $owner ]]; then
      # Being written right now, or its writer died right after the mkdir (then it is older than a minute).
      [[ -n $(find "$claim" -maxdepth 0 -mmin +1) ]] || return 1
    elif pid_alive "$claimer" || is_sandbox_pid "$(cat "$RUN_DIR/$owner/pid" 2>/dev/null)" "$owner"; then
      return 1 # an `up` in progress, or a running sandbox
    fi
    log "reclaiming the stale index $i (was sandbox '${owner:-?}'; cleaning up its remains)"
    if [[ -n $owner ]]; then (SANDBOX_DOWN_GRACE=0 cmd_down "$owner") || true; fi
    rm -rf "$claim"
    mkdir "$claim" 2>/dev/null || return 1
  fi
  echo "$name" >"$claim/name"
  echo "$$" >"$claim/claimer"
  # Someone else (not a sandbox) already uses the addresses or the interface name: leave the index alone.
  if ip link show "$IFACE_PREFIX$i" >/dev/null 2>&1 || [[ -n $(ip -o addr show to "$NET_PREFIX.$i.0/30") ]]; then
    rm -rf "$claim"
    return 1
  fi
  return 0
}

release_index_of() {
  local name=$1 claim
  for claim in "$RUN_DIR"/.index/*; do
    [[ -d $claim ]] || continue
    if [[ $(cat "$claim/name" 2>/dev/null) == "$name" ]]; then rm -rf "$claim"; fi
  done
}

# Loads $RUN_DIR/NAME/env into SANDBOX_* variables; fails when it does not exist.
load_env() {
  local name=$1 env=$RUN_DIR/$1/env
  [[ -f $env ]] || die "sandbox '$name' is not running (no $env)"
  # shellcheck source=/dev/null
  source "$env"
}

ssh_opts() {
  local dir=$1
  printf '%s\n' -F /dev/null -i "$dir/root_key" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$dir/known_hosts" -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null \
    -o ConnectTimeout=2 -o LogLevel=ERROR
}

fail_up() {
  local name=$1 msg=$2 dir=$RUN_DIR/$1
  {
    printf 'sandbox: error: %s\n' "$msg"
    if [[ -s $dir/console.log ]]; then
      echo "---- last lines of the sandbox console ($dir/console.log) ----"
      tail -n 40 "$dir/console.log" | sed 's/\x1b\[[0-9;]*m//g' # without the colours
      echo "----"
    fi
  } >&2
  exit 1 # up_exit_trap tears down what was started
}

# EXIT trap of `up`: after the index is claimed, any failure (or SIGINT/SIGTERM) removes everything started so far.
up_exit_trap() {
  local rc=$?
  if ((rc != 0)) && [[ -n ${UP_NAME:-} ]]; then
    SANDBOX_DOWN_GRACE=0 cmd_down "$UP_NAME" >/dev/null 2>&1 || true
  fi
}

cmd_up() {
  [[ $# -eq 2 ]] || usage
  local name=$1 index=$2 lower dir i iface pid leader nspawn deadline started out
  check_name "$name"
  cmd_preflight
  lower=$(ensure_rootfs)
  started=$(date +%s%N)
  mkdir -p "$RUN_DIR"
  chmod 700 "$RUN_DIR"
  dir=$RUN_DIR/$name
  if [[ -d $dir ]]; then
    if is_sandbox_pid "$(cat "$dir/pid" 2>/dev/null)" "$name"; then die "sandbox '$name' is already running ($dir)"; fi
    log "cleaning up the remains of an earlier sandbox '$name'"
    SANDBOX_DOWN_GRACE=0 cmd_down "$name"
  fi
  if [[ $index == auto ]]; then
    for ((i = 0; i <= MAX_INDEX; i++)); do
      if claim_index "$i" "$name"; then index=$i && break; fi
    done
    [[ $index != auto ]] || die "no free sandbox index in 0..$MAX_INDEX (see $RUN_DIR/.index)"
  else
    if ! [[ $index =~ ^[0-9]+$ ]] || ((index > MAX_INDEX)); then
      die "invalid INDEX '$index': want 0..$MAX_INDEX or auto"
    fi
    if ! claim_index "$index" "$name"; then
      log "error: index $index is taken (by sandbox '$(cat "$RUN_DIR/.index/$index/name" 2>/dev/null || echo '?')' or an existing interface/address)"
      exit 3
    fi
  fi
  UP_NAME=$name
  trap up_exit_trap EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap '' PIPE # a reader that goes away early (`up ... | head`) must not kill us before the cleanup
  iface=$IFACE_PREFIX$index
  mkdir -m 700 "$dir"

  # Per-boot keys: the sandbox's SSH host key and root's client key pair.
  if [[ -n ${SANDBOX_HOST_KEY:-} ]]; then
    install -m 600 "$SANDBOX_HOST_KEY" "$dir/ssh_host_ed25519_key"
    ssh-keygen -y -f "$dir/ssh_host_ed25519_key" >"$dir/ssh_host_ed25519_key.pub" ||
      fail_up "$name" "SANDBOX_HOST_KEY=$SANDBOX_HOST_KEY is not a readable unencrypted private key"
  else
    ssh-keygen -q -t ed25519 -N '' -C "codex-k8s-sandbox-$name" -f "$dir/ssh_host_ed25519_key"
  fi
  ssh-keygen -q -t ed25519 -N '' -C "root@codex-k8s-sandbox-test" -f "$dir/root_key"
  printf '%s %s\n' "$NET_PREFIX.$index.2" "$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >"$dir/known_hosts"
  cat >"$dir/ssh_config" <<EOF
# ssh -F $dir/ssh_config $name
Host $name
  HostName $NET_PREFIX.$index.2
  Port 22
  User root
  IdentityFile $dir/root_key
  IdentitiesOnly yes
  BatchMode yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  ConnectTimeout 5
EOF
  # What __boot (inside the new mount namespace) needs; %q-quoted so that odd paths survive.
  {
    printf 'BOOT_LOWER=%q\n' "$lower"
    printf 'BOOT_INDEX=%q\n' "$index"
    printf 'BOOT_IFACE=%q\n' "$iface"
    printf 'BOOT_OVERLAY_DIR=%q\n' "$(if [[ -n ${SANDBOX_OVERLAY_DIR:-} ]]; then readlink -f "$SANDBOX_OVERLAY_DIR"; fi)"
    printf 'BOOT_TMPFS_SIZE=%q\n' "${SANDBOX_TMPFS_SIZE:-2g}"
  } >"$dir/boot.conf"
  if [[ -n ${SANDBOX_OVERLAY_DIR:-} && ! -d $SANDBOX_OVERLAY_DIR ]]; then
    fail_up "$name" "SANDBOX_OVERLAY_DIR=$SANDBOX_OVERLAY_DIR is not a directory"
  fi

  # Start detached: setsid (own session, no terminal signals), stdin closed, console to a log file.
  # `unshare --mount` gives the boot a private mount namespace: the tmpfs and overlay mounted by __boot exist only
  # there and vanish when its last process exits. `--fork --kill-child` makes unshare the parent that, when killed,
  # SIGKILLs its child (nspawn), which takes the container with it. unshare ignores SIGTERM: use SIGKILL.
  setsid unshare --mount --propagation private --fork --kill-child -- "$BASH" "$SELF" __boot "$name" \
    </dev/null >"$dir/console.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/pid"

  # The host end of the veth appears when nspawn has set up the container's network namespace.
  deadline=$((SECONDS + 15))
  until ip link show "$iface" >/dev/null 2>&1; do
    pid_alive "$pid" || fail_up "$name" "the sandbox exited during boot"
    ((SECONDS < deadline)) || fail_up "$name" "timed out after 15 s waiting for the veth $iface"
    sleep 0.05
  done
  out=$(ip addr add "$NET_PREFIX.$index.1/30" dev "$iface" 2>&1 && ip link set "$iface" up 2>&1) ||
    fail_up "$name" "cannot configure $iface: $out"

  # The container's init: the child of systemd-nspawn whose PID in its own PID namespace is 1 (NSpid: HOSTPID 1).
  # nsenter -t LEADER joins the sandbox's namespaces.
  leader=''
  until [[ -n $leader ]]; do
    nspawn=$(pgrep -P "$pid" -x systemd-nspawn || true)
    for i in $(if [[ -n $nspawn ]]; then pgrep -P "$nspawn"; fi); do
      if [[ $(awk '/^NSpid:/ { print $3 }' "/proc/$i/status" 2>/dev/null) == 1 ]]; then leader=$i; fi
    done
    [[ -n $leader ]] && break
    pid_alive "$pid" || fail_up "$name" "the sandbox exited during boot"
    ((SECONDS < deadline)) || fail_up "$name" "timed out waiting for the container's init process"
    sleep 0.05
  done
  echo "$leader" >"$dir/leader"

  # Ready when a real SSH login as root works (sshd is up, the key is in place, the host key is the one we pinned).
  local timeout=${SANDBOX_BOOT_TIMEOUT:-30} attempts=0
  local -a opts
  mapfile -t opts < <(ssh_opts "$dir")
  deadline=$((SECONDS + timeout))
  until out=$(ssh "${opts[@]}" "root@$NET_PREFIX.$index.2" true 2>&1); do
    attempts=$((attempts + 1))
    pid_alive "$pid" || fail_up "$name" "the sandbox exited during boot"
    ((SECONDS < deadline)) ||
      fail_up "$name" "sshd of sandbox '$name' did not accept a login within $timeout s ($attempts attempts; last ssh error: ${out:-none})"
    sleep 0.2
  done

  {
    printf 'SANDBOX_NAME=%q\n' "$name"
    printf 'SANDBOX_INDEX=%q\n' "$index"
    printf 'SANDBOX_HOST=%q\n' "$NET_PREFIX.$index.2"
    printf 'SANDBOX_HOST_ADDR=%q\n' "$NET_PREFIX.$index.1"
    printf 'SANDBOX_PORT=22\n'
    printf 'SANDBOX_KEY=%q\n' "$dir/root_key"
    printf 'SANDBOX_HOST_PUBKEY=%q\n' "$dir/ssh_host_ed25519_key.pub"
    printf 'SANDBOX_KNOWN_HOSTS=%q\n' "$dir/known_hosts"
    printf 'SANDBOX_SSH_CONFIG=%q\n' "$dir/ssh_config"
    printf 'SANDBOX_IFACE=%q\n' "$iface"
    printf 'SANDBOX_PID=%q\n' "$pid"
    printf 'SANDBOX_LEADER=%q\n' "$leader"
    printf 'SANDBOX_CONSOLE_LOG=%q\n' "$dir/console.log"
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  rm -rf "$RUN_DIR/.index/$index/claimer"
  UP_NAME=''
  log "sandbox '$name' up at $NET_PREFIX.$index.2 in $((($(date +%s%N) - started) / 1000000)) ms"
  echo "$dir/env"
}

# Runs as the child of `unshare --mount` (see cmd_up): prepares the root and execs systemd-nspawn.
cmd_boot() {
  local name=$1 dir=$RUN_DIR/$1 fs merged cg root
  # shellcheck source=/dev/null
  source "$dir/boot.conf"
  # unshare --propagation private already did this; repeat it so that a changed default cannot make the mounts
  # below propagate back into the host's namespace.
  mount --make-rprivate /
  # nspawn keeps state under /run/systemd (nspawn/propagate/NAME, ...); give it a private tmpfs so none of that lands
  # in the host's /run (mkdir -p only creates the empty directory if the host has none).
  mkdir -p /run/systemd
  mount -t tmpfs -o mode=0755 codex-k8s-sandbox-run /run/systemd
  # Every write of the sandbox goes to this tmpfs (upperdir); the cached tree (lowerdir) is never written.
  fs=$dir/fs
  mkdir -p "$fs"
  mount -t tmpfs -o "mode=0755,size=$BOOT_TMPFS_SIZE" "codex-k8s-sandbox-$name" "$fs"
  mkdir "$fs/upper" "$fs/work" "$fs/merged"
  merged=$fs/merged
  mount -t overlay overlay -o "lowerdir=$BOOT_LOWER,upperdir=$fs/upper,workdir=$fs/work" "$merged"

  # Per-boot identity.
  echo "$name" >"$merged/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$name" >"$merged/etc/hosts"
  echo 'nameserver 127.0.0.1' >"$merged/etc/resolv.conf"
  mkdir -p "$merged/etc/systemd/network"
  cat >"$merged/etc/systemd/network/10-host0.network" <<EOF
# codex-k8s sandbox: static address on the container end of the veth (written per boot by sandbox.sh)
[Match]
Name=host0

[Network]
Address=$NET_PREFIX.$BOOT_INDEX.2/30
Gateway=$NET_PREFIX.$BOOT_INDEX.1
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
  install -m 600 "$dir/ssh_host_ed25519_key" "$merged/etc/ssh/ssh_host_ed25519_key"
  install -m 644 "$dir/ssh_host_ed25519_key.pub" "$merged/etc/ssh/ssh_host_ed25519_key.pub"
  install -d -m 700 "$merged/root/.ssh"
  install -m 600 "$dir/root_key.pub" "$merged/root/.ssh/authorized_keys"

  # Test doubles: files (and symlinks) only, so that the overlay directory's own modes (mktemp -d makes 0700) never
  # replace those of /, /usr, ...; new parent directories get 0755; modes kept, owner root. Unpacked by a tar running
  # chrooted in the sandbox root, so that a path through one of the sandbox's absolute symlinks stays inside it.
  if [[ -n $BOOT_OVERLAY_DIR ]]; then
    (cd "$BOOT_OVERLAY_DIR" && find . \( -type f -o -type l \) -print0 | tar --null --no-recursion -T - -cf -) |
      chroot "$merged" /bin/sh -c 'umask 022 && exec tar -xf - -C / --no-same-owner'
  fi

  # cgroups (sandbox-notes 3): with --keep-unit and no systemd on the host, nspawn creates payload/ and supervisor/
  # below the cgroup it was started in. Give each sandbox a cgroup of its own in every hierarchy nspawn uses, so two
  # sandboxes do not collide and `down` can find (and kill) every process of this one.
  for root in $(cgroup_roots); do
    cg=$root/$CGROUP_GROUP/$name
    mkdir -p "$cg"
    echo $$ >"$cg/cgroup.procs"
  done

  # --register=no: no machined on the host; --keep-unit: stay in the cgroup above; --network-veth-extra: a private
  # network namespace with a veth pair, host end $BOOT_IFACE, container end host0 (configured by networkd, above);
  # --resolv-conf/--timezone/--link-journal: leave the container's files alone and keep its journal inside it;
  # --console=read-only: the boot messages go to console.log, nothing reads our (closed) stdin.
  exec systemd-nspawn --quiet --directory="$merged" --boot --register=no --keep-unit --machine="$name" \
    --network-veth-extra="$BOOT_IFACE:host0" --resolv-conf=off --timezone=off --link-journal=no --console=read-only
}

cmd_exec() {
  [[ $# -ge 3 && $2 == -- ]] || usage
  local name=$1
  shift 2
  check_name "$name"
  load_env "$name"
  if ! is_sandbox_pid "$SANDBOX_PID" "$name" || ! pid_alive "$SANDBOX_LEADER"; then
    die "sandbox '$name' is not running (its processes are gone; run: $SELF down $name)"
  fi
  # Join the container init's mount (and, through it, root directory), UTS, IPC, network and PID namespaces, with a
  # clean environment. Not a login: no PAM, no sshd, nothing in the journal's 'Accepted publickey' lines.
  exec nsenter --target "$SANDBOX_LEADER" --mount --uts --ipc --net --pid --root --wd -- \
    /usr/bin/env -i PATH="$SANDBOX_PATH" HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb "$@"
}

cmd_rekey() {
  [[ $# -eq 1 ]] || usage
  local name=$1 dir=$RUN_DIR/$1 deadline got want
  check_name "$name"
  load_env "$name"
  rm -f "$dir/new_host_key" "$dir/new_host_key.pub"
  ssh-keygen -q -t ed25519 -N '' -C "codex-k8s-sandbox-$name-rekeyed" -f "$dir/new_host_key"
  "$SELF" exec "$name" -- sh -c 'umask 077 && cat >/etc/ssh/ssh_host_ed25519_key.new &&
    mv /etc/ssh/ssh_host_ed25519_key.new /etc/ssh/ssh_host_ed25519_key' <"$dir/new_host_key"
  "$SELF" exec "$name" -- sh -c 'umask 022 && cat >/etc/ssh/ssh_host_ed25519_key.pub.new &&
    mv /etc/ssh/ssh_host_ed25519_key.pub.new /etc/ssh/ssh_host_ed25519_key.pub' <"$dir/new_host_key.pub"
  # Debian's ssh.service reloads with `sshd -t` and SIGHUP: sshd re-executes itself and reads the new key.
  # Established connections keep their session.
  "$SELF" exec "$name" -- systemctl reload ssh.service
  cp "$dir/ssh_host_ed25519_key.pub" "$dir/ssh_host_ed25519_key.pub.old"
  mv "$dir/new_host_key" "$dir/ssh_host_ed25519_key"
  mv "$dir/new_host_key.pub" "$dir/ssh_host_ed25519_key.pub"
  want=$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")
  printf '%s %s\n' "$SANDBOX_HOST" "$want" >"$dir/known_hosts"
  # For 0.2-1 s after the reload sshd refuses or resets connections: wait until it offers the new key (ssh-keyscan
  # does not log in, so this adds no 'Accepted publickey' line).
  deadline=$((SECONDS + 10))
  while :; do
    got=$(ssh-keyscan -T 1 -t ed25519 -p "$SANDBOX_PORT" "$SANDBOX_HOST" 2>/dev/null | awk '{ print $2, $3; exit }')
    [[ $got == "$want" ]] && break
    ((SECONDS < deadline)) || die "sshd of sandbox '$name' still does not offer the new host key 10 s after the reload"
    sleep 0.1
  done
  log "sandbox '$name' has a new host key: $(ssh-keygen -l -f "$dir/ssh_host_ed25519_key.pub")"
  echo "$dir/ssh_host_ed25519_key.pub"
}

# Every PID in this sandbox's cgroups (in any hierarchy), deepest first.
sandbox_cgroup_pids() {
  local name=$1 root
  for root in $(cgroup_roots); do
    if [[ -d $root/$CGROUP_GROUP/$name ]]; then
      find "$root/$CGROUP_GROUP/$name" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    fi
  done | sort -u
}

cmd_down() {
  [[ $# -eq 1 ]] || usage
  local name=$1 dir=$RUN_DIR/$1 pid='' leader='' grace=${SANDBOX_DOWN_GRACE:-5} deadline root p iface=''
  check_name "$name"
  if [[ -f $dir/pid ]]; then pid=$(cat "$dir/pid"); fi
  if [[ -f $dir/leader ]]; then leader=$(cat "$dir/leader"); fi
  if [[ -f $dir/boot.conf ]]; then iface=$(sed -n 's/^BOOT_IFACE=//p' "$dir/boot.conf"); fi
  if is_sandbox_pid "$pid" "$name"; then
    # A poweroff first, bounded; then SIGKILL whatever is left. --force: skip the orderly stop of units (about
    # 2.4 s, most of it logind waiting for unattended-upgrades' shutdown inhibitor) and go straight to SIGTERM of
    # every process (sshd and its sessions close their connections cleanly, so a client's ControlMaster on the host
    # sees the end instead of hanging) and SIGKILL: about 0.15 s. Nothing needs saving: it all lives in a tmpfs.
    if ((grace > 0)) && pid_alive "$leader"; then
      timeout 5 nsenter --target "$leader" --mount --pid -- /usr/bin/env -i PATH="$SANDBOX_PATH" \
        systemctl poweroff --force --no-block >/dev/null 2>&1 || true
      deadline=$(($(date +%s%N) + grace * 1000000000))
      while pid_alive "$pid" && (($(date +%s%N) < deadline)); do sleep 0.05; done
    fi
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
  fi
  # Anything still in our cgroups (e.g. an `exec` that outlived the container): kill it, wait, remove the cgroups.
  deadline=$((SECONDS + 5))
  while [[ -n $(sandbox_cgroup_pids "$name") ]]; do
    for p in $(sandbox_cgroup_pids "$name"); do kill -KILL "$p" 2>/dev/null || true; done
    ((SECONDS < deadline)) || die "processes of sandbox '$name' survive SIGKILL: $(sandbox_cgroup_pids "$name" | paste -sd' ' -)"
    sleep 0.05
  done
  for root in $(cgroup_roots); do
    if [[ -d $root/$CGROUP_GROUP/$name ]]; then
      find "$root/$CGROUP_GROUP/$name" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ ! -d $root/$CGROUP_GROUP/$name ]] || die "cannot remove cgroup $root/$CGROUP_GROUP/$name"
    fi
    rmdir "$root/$CGROUP_GROUP" 2>/dev/null || true # only when no other sandbox uses it
  done
  # The veth pair dies with the sandbox's network namespace; remove the host end if something still holds it.
  if [[ -n $iface ]]; then
    deadline=$((SECONDS + 3))
    while ip link show "$iface" >/dev/null 2>&1 && ((SECONDS < deadline)); do sleep 0.05; done
    ip link del "$iface" 2>/dev/null || true
  fi
  if [[ -d $dir ]]; then
    # $dir/fs was only ever mounted inside the sandbox's own mount namespace, which is gone now.
    safe_rm_rf "$dir"
  fi
  release_index_of "$name"
}

cmd_list() {
  local env
  for env in "$RUN_DIR"/*/env; do
    [[ -f $env ]] || continue
    (
      # shellcheck source=/dev/null
      source "$env"
      state=dead
      if is_sandbox_pid "$SANDBOX_PID" "$SANDBOX_NAME"; then state=running; fi
      printf '%s\t%s\t%s\tpid=%s\n' "$SANDBOX_NAME" "$SANDBOX_HOST" "$state" "$SANDBOX_PID"
    )
  done
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd=$1
  shift
  case $cmd in
    preflight) cmd_preflight ;;
    build) cmd_build ;;
    up) cmd_up "$@" ;;
    __boot) cmd_boot "$@" ;;
    exec) cmd_exec "$@" ;;
    rekey) cmd_rekey "$@" ;;
    down) cmd_down "$@" ;;
    list) cmd_list ;;
    -h | --help | help) usage ;;
    *)
      log "unknown command '$cmd'"
      usage
      ;;
  esac
}

main "$@"
