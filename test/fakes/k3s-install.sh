#!/bin/sh
# k3s install script test double (stands in for https://get.k3s.io in the codex-k8s sandbox). NOT the real
# installer: it downloads nothing and installs a k3s stand-in that runs no cluster.
#
# Run like the real one:  INSTALL_K3S_VERSION=v1.31.4+k3s1 INSTALL_K3S_EXEC='server --disable traefik' sh install.sh [flags]
# Supports: INSTALL_K3S_VERSION (REQUIRED, vX.Y.Z+k3sN), INSTALL_K3S_EXEC, k3s server flags as arguments,
#   INSTALL_K3S_SKIP_DOWNLOAD=true (keeps an existing /usr/local/bin/k3s; fails if there is none),
#   INSTALL_K3S_SKIP_ENABLE, INSTALL_K3S_SKIP_START, INSTALL_K3S_FORCE_RESTART, INSTALL_K3S_SYMLINK=force,
#   K3S_KUBECONFIG_MODE, --write-kubeconfig-mode, --write-kubeconfig, --disable X, --node-name N.
# Writes (each only when its content or mode differs, like the real script's hash comparison):
#   /usr/local/bin/k3s             a shell stand-in: `k3s --version`, `k3s kubectl ...` (-> the kubectl double),
#                                  `k3s server` (writes containerd's certs.d/*/hosts.toml from registries.yaml like
#                                  the real agent, via k3s-registries.mts, then sleeps forever: the harmless
#                                  long-running service process; CODEXK8S_FAKES_K3S_SERVER_ONCE=1 exits instead),
#                                  minimal `k3s crictl|ctr version|images`; kubectl/crictl/ctr symlinks when free
#   /usr/local/bin/k3s-killall.sh, /usr/local/bin/k3s-uninstall.sh
#   /etc/systemd/system/k3s.service (Type=exec, ExecStart=/usr/local/bin/k3s server ...), k3s.service.env (0600)
#   /etc/rancher/k3s/k3s.yaml      a kubeconfig with the requested mode (default 600). The real k3s writes it when
#                                  the server starts; the double writes it here so it exists without systemd.
#   ${CODEXK8S_FAKES_DIR}/cluster.json   "the API server is up": version, node name, disabled add-ons
# then `systemctl enable k3s` + `daemon-reload` and, when something changed (or INSTALL_K3S_FORCE_RESTART=true),
# `systemctl restart k3s`: "No change detected so skipping service start" otherwise, like the real script.
# Refuses: a missing or malformed INSTALL_K3S_VERSION (no "latest"/channel installs), K3S_URL/agent mode,
# unknown k3s server flags (KNOWN_VALUE_FLAGS / KNOWN_BOOL_FLAGS below: add real flags there).
# Test hooks: CODEXK8S_FAKES_ROOT=/tmp/x prefixes every absolute path it writes and skips systemctl;
# CODEXK8S_FAKES_DIR is the state dir (calls.jsonl). Each run appends one record to calls.jsonl:
#   {"tool":"k3s-install","argv":[...],"mutating":<something changed>,"at":...,"exitCode":N,"changes":[...],
#    "detail":{"env":{...INSTALL_K3S_*/K3S_* seen; tokens redacted...},"exec":[...]}}
set -eu

ROOT="${CODEXK8S_FAKES_ROOT:-}"
FAKES_DIR="${CODEXK8S_FAKES_DIR:-/var/lib/codex-k8s-fakes}"
BIN_DIR=/usr/local/bin
SYSTEMD_DIR=/etc/systemd/system
FAKES_KUBECTL=/opt/codex-k8s-fakes/bin/kubectl
FAKES_HOME=/opt/codex-k8s-fakes
FAKES_NODE=/opt/codex-k8s-bootstrap/node/bin/node

KNOWN_VALUE_FLAGS='write-kubeconfig-mode write-kubeconfig write-kubeconfig-group tls-san disable node-name node-ip
node-external-ip cluster-cidr service-cidr cluster-dns cluster-domain data-dir flannel-backend kube-apiserver-arg
kubelet-arg kube-controller-manager-arg kube-proxy-arg kube-scheduler-arg kube-cloud-controller-manager-arg
private-registry bind-address advertise-address advertise-port https-listen-port token token-file agent-token
agent-token-file node-label node-taint system-default-registry snapshotter default-local-storage-path
egress-selector-mode etcd-snapshot-schedule-cron etcd-snapshot-retention datastore-endpoint secrets-encryption-provider
log config resolv-conf service-node-port-range'
KNOWN_BOOL_FLAGS='cluster-init disable-network-policy secrets-encryption disable-helm-controller disable-cloud-controller
disable-kube-proxy embedded-registry protect-kernel-defaults selinux debug disable-apiserver disable-scheduler
disable-etcd disable-controller-manager prefer-bundled-bin flannel-ipv6-masq'

CHANGES=''
EXEC_WORDS=''
ARGV_JSON='[]'

info() { echo "[INFO]  $*"; }
fatal() {
  echo "[ERROR]  $*" >&2
  exit 1
}
add_change() {
  CHANGES="${CHANGES}${CHANGES:+
}$1"
}

# ---- JSON helpers (POSIX sh + awk) ------------------------------------------------------------------------------
json_str() {
  printf '%s' "$1" | LC_ALL=C awk '
    BEGIN { ORS = ""; for (i = 1; i < 32; i++) ctl[sprintf("%c", i)] = sprintf("\\u%04x", i); printf "\"" }
    {
      if (NR > 1) printf "\\n"
      n = length($0)
      for (i = 1; i <= n; i++) {
        c = substr($0, i, 1)
        if (c == "\\") printf "\\\\"; else if (c == "\"") printf "\\\""; else if (c in ctl) printf "%s", ctl[c]; else printf "%s", c
      }
    }
    END { printf "\"" }'
}
json_array() {
  ja_out='['
  ja_sep=''
  for ja_item in "$@"; do
    ja_out="${ja_out}${ja_sep}$(json_str "$ja_item")"
    ja_sep=','
  done
  printf '%s]' "$ja_out"
}
# Newline-separated list -> JSON array.
json_lines() {
  jl_old_ifs=$IFS
  IFS='
'
  set -f
  # shellcheck disable=SC2086 # word splitting on newlines is the point
  set -- $1
  set +f
  IFS=$jl_old_ifs
  json_array "$@"
}
now_iso() {
  t=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
  case "$t" in *N*) date -u +%Y-%m-%dT%H:%M:%S.000Z ;; *) echo "$t" ;; esac
}
env_json() {
  ej_out='{'
  ej_sep=''
  for ej_name in INSTALL_K3S_VERSION INSTALL_K3S_EXEC INSTALL_K3S_SKIP_DOWNLOAD INSTALL_K3S_SKIP_START INSTALL_K3S_SKIP_ENABLE \
    INSTALL_K3S_FORCE_RESTART INSTALL_K3S_SYMLINK INSTALL_K3S_CHANNEL INSTALL_K3S_BIN_DIR INSTALL_K3S_SYSTEMD_DIR \
    INSTALL_K3S_NAME INSTALL_K3S_TYPE K3S_KUBECONFIG_MODE K3S_URL K3S_TOKEN K3S_AGENT_TOKEN K3S_NODE_NAME; do
    ej_set=''
    eval "ej_set=\${$ej_name+set}"
    [ "$ej_set" = set ] || continue
    eval "ej_val=\${$ej_name}"
    case "$ej_name" in *TOKEN) ej_val="<redacted>" ;; esac
    ej_out="${ej_out}${ej_sep}\"${ej_name}\":$(json_str "$ej_val")"
    ej_sep=','
  done
  printf '%s}' "$ej_out"
}

on_exit() {
  code=$1
  mutating=false
  [ -n "$CHANGES" ] && mutating=true
  mkdir -p "$FAKES_DIR"
  line="{\"tool\":\"k3s-install\",\"argv\":${ARGV_JSON},\"mutating\":${mutating},\"at\":\"$(now_iso)\",\"exitCode\":${code}"
  [ -n "$CHANGES" ] && line="${line},\"changes\":$(json_lines "$CHANGES")"
  line="${line},\"detail\":{\"env\":$(env_json),\"exec\":$(json_lines "$EXEC_WORDS")}}"
  printf '%s\n' "$line" >>"$FAKES_DIR/calls.jsonl"
}

# ---- file helpers -------------------------------------------------------------------------------------------------
file_mode() { stat -c '%a' "$1" 2>/dev/null || echo none; }

# put_file DEST MODE < content: installs the content when it or the mode differs; records the change.
put_file() {
  pf_dest="$ROOT$1"
  pf_tmp="$(dirname "$pf_dest")/.codex-k8s-fake.$$"
  mkdir -p "$(dirname "$pf_dest")"
  (umask 077 && cat >"$pf_tmp")
  chmod "$2" "$pf_tmp"
  if [ -f "$pf_dest" ] && cmp -s "$pf_tmp" "$pf_dest" && [ "$(file_mode "$pf_dest")" = "$(file_mode "$pf_tmp")" ]; then
    rm -f "$pf_tmp"
    return 1
  fi
  mv -f "$pf_tmp" "$pf_dest"
  add_change "wrote $1 (mode $2)"
  return 0
}

# install_generated DEST MODE FUNCTION: put_file with the function's output (no pipeline: in dash the last command
# of a pipeline runs in a subshell, and the change record would be lost).
install_generated() {
  ig_tmp=$(mktemp)
  "$3" >"$ig_tmp"
  if put_file "$1" "$2" <"$ig_tmp"; then
    rm -f "$ig_tmp"
    return 0
  fi
  rm -f "$ig_tmp"
  return 1
}

# Single-quote a value for a generated shell script.
sq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

in_list() {
  for il_w in $2; do [ "$il_w" = "$1" ] && return 0; done
  return 1
}

# ---- arguments ----------------------------------------------------------------------------------------------------
ARGV_JSON=$(json_array "$@")
trap 'on_exit $?' EXIT

VERSION="${INSTALL_K3S_VERSION:-}"
[ -n "$VERSION" ] || fatal "INSTALL_K3S_VERSION is required by the k3s install double (no unpinned/channel installs)"
printf '%s' "$VERSION" | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$' ||
  fatal "INSTALL_K3S_VERSION=$VERSION is not a k3s release (want vX.Y.Z+k3sN)"
[ -z "${K3S_URL:-}" ] || fatal "K3S_URL is set: the k3s install double supports a single server only (no agents)"

# Like the real script: INSTALL_K3S_EXEC is eval'ed (so quotes group words), shell specials escaped; args quoted.
escape() { printf '%s' "$@" | sed -e 's/\([][!#$%&()*;<=>?\_`{|}]\)/\\\1/g;'; }
quote() {
  for q_arg in "$@"; do
    printf '%s\n' "$q_arg" | sed "s/'/'\\\\''/g;1s/^/'/;\$s/\$/'/"
  done
}
# shellcheck disable=SC2046 # word splitting is the point
eval set -- $(escape "${INSTALL_K3S_EXEC:-}") $(quote "$@")
case "${1:-}" in
  server) shift ;;
  agent) fatal "agent mode is not supported by the k3s install double" ;;
  -*|'') ;;
  *) fatal "unknown k3s command '$1' in INSTALL_K3S_EXEC/arguments (the double supports server)" ;;
esac
EXEC_WORDS='server'
KUBECONFIG_MODE="${K3S_KUBECONFIG_MODE:-600}"
KUBECONFIG_PATH=/etc/rancher/k3s/k3s.yaml
DISABLED=''
NODE_NAME="${K3S_NODE_NAME:-$(hostname 2>/dev/null || cat /etc/hostname)}"
while [ $# -gt 0 ]; do
  arg=$1
  shift
  case "$arg" in
    --*=*) name=${arg%%=*}; name=${name#--}; value=${arg#*=}; has_value=yes ;;
    --*) name=${arg#--}; value=''; has_value=no ;;
    *) fatal "unexpected argument '$arg' (k3s server takes --flags only)" ;;
  esac
  if in_list "$name" "$KNOWN_VALUE_FLAGS"; then
    if [ "$has_value" = no ]; then
      [ $# -gt 0 ] || fatal "flag --$name needs a value"
      value=$1
      shift
    fi
    EXEC_WORDS="${EXEC_WORDS}
--$name
$value"
  elif in_list "$name" "$KNOWN_BOOL_FLAGS"; then
    EXEC_WORDS="${EXEC_WORDS}
$arg"
    continue
  else
    fatal "unknown k3s server flag --$name (if it is real, add it to KNOWN_VALUE_FLAGS/KNOWN_BOOL_FLAGS in test/fakes/k3s-install.sh)"
  fi
  case "$name" in
    write-kubeconfig-mode) KUBECONFIG_MODE=$value ;;
    write-kubeconfig) KUBECONFIG_PATH=$value ;;
    node-name) NODE_NAME=$value ;;
    disable) DISABLED="${DISABLED}${DISABLED:+
}$(printf '%s' "$value" | tr ',' '\n')" ;;
  esac
done
printf '%s' "$KUBECONFIG_MODE" | grep -Eq '^0?[0-7]{3}$' || fatal "invalid kubeconfig mode '$KUBECONFIG_MODE'"

info "Using $VERSION as release (fake: nothing is downloaded)"

# ---- the k3s binary (a shell stand-in) ------------------------------------------------------------------------------
write_k3s_binary() {
  cat <<EOF
#!/bin/sh
# k3s test double written by test/fakes/k3s-install.sh (codex-k8s sandbox). NOT k3s: no cluster runs here.
K3S_FAKE_VERSION=$(sq "$VERSION")
K3S_FAKE_ROOT=$(sq "$ROOT")
K3S_FAKE_STATE=$(sq "$FAKES_DIR")
KUBECTL="\${CODEXK8S_FAKES_KUBECTL:-$FAKES_KUBECTL}"
me=\$(basename "\$0")
if [ "\$me" = k3s ]; then
  me=\${1:-}
  [ \$# -gt 0 ] && shift
fi
case "\$me" in
  --version|-v|version)
    printf 'k3s version %s (fa4e0000)\ngo version go1.23.4\n' "\$K3S_FAKE_VERSION" ;;
  kubectl)
    export KUBECONFIG="\${KUBECONFIG:-/etc/rancher/k3s/k3s.yaml}"
    exec "\$KUBECTL" "\$@" ;;
  server)
    # Like the real agent at start: containerd's hosts.toml files from registries.yaml (test/fakes/k3s-registries.mts).
    # A registries.yaml it refuses makes the start fail, as it does for k3s.
    CODEXK8S_FAKES_ROOT="\$K3S_FAKE_ROOT" CODEXK8S_FAKES_DIR="\${CODEXK8S_FAKES_DIR:-\$K3S_FAKE_STATE}" \\
      "\${CODEXK8S_FAKES_NODE:-$FAKES_NODE}" --disable-warning=ExperimentalWarning "\${CODEXK8S_FAKES_HOME:-$FAKES_HOME}/k3s-registries.mts" server "\$@" || exit 1
    # Then a harmless long-running process so that systemd reports k3s active (unit tests: exit instead).
    [ "\${CODEXK8S_FAKES_K3S_SERVER_ONCE:-}" = 1 ] && exit 0
    exec sleep infinity ;;
  crictl|ctr)
    case "\${1:-}" in
      version|--version) printf '%s version fake (k3s %s)\n' "\$me" "\$K3S_FAKE_VERSION" ;;
      images) if [ "\$me" = ctr ]; then echo 'REF TYPE DIGEST SIZE PLATFORMS LABELS'; else echo 'IMAGE TAG IMAGE ID SIZE'; fi ;;
      *) echo "k3s \$me (fake): unsupported: \$*" >&2; exit 1 ;;
    esac ;;
  check-config) echo 'STATUS: pass (fake)' ;;
  *)
    echo "k3s (fake): unsupported command: \$me \$*" >&2
    exit 1 ;;
esac
EOF
}

if [ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" = true ]; then
  [ -x "$ROOT$BIN_DIR/k3s" ] || fatal "INSTALL_K3S_SKIP_DOWNLOAD=true but $BIN_DIR/k3s is missing"
  info "Skipping k3s download and verify"
elif install_generated "$BIN_DIR/k3s" 755 write_k3s_binary; then
  info "Installing k3s to $BIN_DIR/k3s"
else
  info "Skipping binary downloaded, installed k3s matches hash"
fi

for cmd in kubectl crictl ctr; do
  if [ -e "$ROOT$BIN_DIR/$cmd" ] || [ -L "$ROOT$BIN_DIR/$cmd" ]; then
    if [ "${INSTALL_K3S_SYMLINK:-}" = force ] && [ "$(readlink "$ROOT$BIN_DIR/$cmd" || true)" != k3s ]; then
      ln -sf k3s "$ROOT$BIN_DIR/$cmd"
      add_change "symlinked $BIN_DIR/$cmd"
    else
      info "Skipping $BIN_DIR/$cmd symlink to k3s, already exists"
    fi
  elif [ "${INSTALL_K3S_SYMLINK:-}" != skip ]; then
    info "Creating $BIN_DIR/$cmd symlink to k3s"
    ln -s k3s "$ROOT$BIN_DIR/$cmd"
    add_change "symlinked $BIN_DIR/$cmd"
  fi
done

# ---- killall / uninstall --------------------------------------------------------------------------------------------
write_killall() {
  cat <<'EOF'
#!/bin/sh
# k3s-killall.sh test double (codex-k8s sandbox): stops the k3s stand-in.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl stop k3s 2>/dev/null || true
fi
EOF
}
if install_generated "$BIN_DIR/k3s-killall.sh" 755 write_killall; then info "Creating killall script $BIN_DIR/k3s-killall.sh"; fi

write_uninstall() {
  cat <<EOF
#!/bin/sh
# k3s-uninstall.sh test double written by test/fakes/k3s-install.sh (codex-k8s sandbox).
# Stops and removes the k3s stand-in and wipes the fake cluster state; records one call.
ROOT=$(sq "$ROOT")
FAKES_DIR=$(sq "$FAKES_DIR")
if [ -z "\$ROOT" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now k3s >/dev/null 2>&1 || true
fi
for cmd in kubectl crictl ctr; do
  [ "\$(readlink "\$ROOT$BIN_DIR/\$cmd" 2>/dev/null || true)" = k3s ] && rm -f "\$ROOT$BIN_DIR/\$cmd"
done
rm -f "\$ROOT$BIN_DIR/k3s" "\$ROOT$BIN_DIR/k3s-killall.sh" "\$ROOT$SYSTEMD_DIR/k3s.service" "\$ROOT$SYSTEMD_DIR/k3s.service.env"
rm -rf "\$ROOT/etc/rancher/k3s" "\$ROOT/var/lib/rancher/k3s"
rm -rf "\$FAKES_DIR/cluster.json" "\$FAKES_DIR/objects" "\$FAKES_DIR/history" "\$FAKES_DIR/helm" "\$FAKES_DIR/rv"
if [ -z "\$ROOT" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
mkdir -p "\$FAKES_DIR"
printf '{"tool":"k3s-uninstall","argv":[],"mutating":true,"at":"%s","exitCode":0,"changes":["k3s uninstalled"]}\n' "\$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" >>"\$FAKES_DIR/calls.jsonl"
rm -f "\$0"
EOF
}
if install_generated "$BIN_DIR/k3s-uninstall.sh" 755 write_uninstall; then info "Creating uninstall script $BIN_DIR/k3s-uninstall.sh"; fi

# ---- systemd unit, env file -----------------------------------------------------------------------------------------
write_env() { env | grep -E '^(K3S|CONTAINERD)_' | grep -v '^K3S_KUBECONFIG_MODE=' | LC_ALL=C sort || true; }
if install_generated "$SYSTEMD_DIR/k3s.service.env" 600 write_env; then info "env: Creating environment file $SYSTEMD_DIR/k3s.service.env"; fi

write_unit() {
  cat <<'EOF'
[Unit]
Description=Lightweight Kubernetes (codex-k8s test double: a sleeping stand-in)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
# The real unit is Type=notify; the stand-in never notifies, so Type=exec.
Type=exec
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/k3s.service.env
KillMode=process
Delegate=yes
TimeoutStartSec=0
Restart=always
RestartSec=5s
EOF
  printf 'ExecStart=%s/k3s' "$BIN_DIR"
  wu_old_ifs=$IFS
  IFS='
'
  set -f
  for wu_word in $EXEC_WORDS; do
    printf " \\\\\n\t%s" "$(sq "$wu_word")"
  done
  set +f
  IFS=$wu_old_ifs
  printf '\n'
}
if install_generated "$SYSTEMD_DIR/k3s.service" 644 write_unit; then info "systemd: Creating service file $SYSTEMD_DIR/k3s.service"; fi

# ---- kubeconfig + "the API server is up" ----------------------------------------------------------------------------
write_kubeconfig() {
  ca=$(printf 'codex-k8s fake CA' | base64 | tr -d '\n')
  cert=$(printf 'codex-k8s fake client certificate' | base64 | tr -d '\n')
  key=$(printf 'codex-k8s fake client key' | base64 | tr -d '\n')
  cat <<EOF
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: $ca
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: $cert
    client-key-data: $key
EOF
}
if install_generated "$KUBECONFIG_PATH" "$KUBECONFIG_MODE" write_kubeconfig; then info "Wrote kubeconfig $KUBECONFIG_PATH (mode $KUBECONFIG_MODE)"; fi

write_cluster_json() {
  printf '{"version":%s,"nodeName":%s,"disabled":%s,"exec":%s}\n' "$(json_str "$VERSION")" "$(json_str "$NODE_NAME")" \
    "$(json_lines "$DISABLED")" "$(json_lines "$EXEC_WORDS")"
}
mkdir -p "$FAKES_DIR"
if ! { [ -f "$FAKES_DIR/cluster.json" ] && write_cluster_json | cmp -s - "$FAKES_DIR/cluster.json"; }; then
  write_cluster_json >"$FAKES_DIR/cluster.json"
  add_change "cluster $VERSION up (cluster.json)"
fi

# ---- systemd ----------------------------------------------------------------------------------------------------------
if [ -n "$ROOT" ]; then
  info "systemd: skipped (CODEXK8S_FAKES_ROOT is set)"
elif ! command -v systemctl >/dev/null 2>&1 || [ ! -d /run/systemd/system ]; then
  info "systemd: skipped (systemd is not running here)"
elif [ "${INSTALL_K3S_SKIP_ENABLE:-}" != true ]; then
  if ! systemctl is-enabled --quiet k3s 2>/dev/null; then
    add_change "systemctl enable k3s"
  fi
  info "systemd: Enabling k3s unit"
  systemctl enable k3s >/dev/null 2>&1
  systemctl daemon-reload >/dev/null
  if [ "${INSTALL_K3S_SKIP_START:-}" = true ]; then
    :
  elif [ -z "$CHANGES" ] && [ "${INSTALL_K3S_FORCE_RESTART:-}" != true ]; then
    info "No change detected so skipping service start"
  else
    info "systemd: Starting k3s"
    systemctl restart k3s
    add_change "systemctl restart k3s"
  fi
fi
