#!/bin/sh
# The one way images of the codex-k8s service are built: run inside the BuildKit pod (buildkitd-0, container
# buildkitd) through `kubectl exec`, by 50_deploy_codex_k8s (from the uploaded tree) and by the staging-deploy
# workflow (from the runner's checkout). The build context arrives on stdin as a tar, so nothing in the cluster
# needs a token to clone the repository. 50_deploy_codex_k8s ships this file as the ConfigMap buildkit-scripts
# (key build.sh), mounted read-only at /opt/codex-k8s-build/build.sh.
#
#   build.sh exists TAG           exit 0 "present REF" | exit 3 "absent REF" | exit 1 the registry did not answer
#   build.sh build TAG GIT_SHA    stdin: tar of the build context, Dockerfile at its root.
#                                 TAG already in the registry: stdin is drained, "unchanged REF", exit 0 (a
#                                 rebuild of the same commit is a no-op). Otherwise buildctl builds it with the
#                                 build argument GIT_SHA and pushes REF, then "pushed REF", exit 0.
#   TAG is sha-<first 12 hex digits of GIT_SHA>, GIT_SHA 40 lower-case hex digits; anything else exits 2.
#   REF is $CODEXK8S_REGISTRY/codex-k8s:TAG (the registry Service, plain HTTP inside the cluster).
# Only the result line goes to stdout; buildctl's progress goes to stderr.
#
# POSIX sh: the rootless moby/buildkit image is Alpine, so sh, tar, mktemp and wget are BusyBox's.
set -eu

REPO=codex-k8s
ACCEPT='application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json'

usage() {
  echo "build.sh: $*" >&2
  echo "usage: build.sh exists sha-<12 hex> | build.sh build sha-<12 hex> <40 hex git sha>  (build: context tar on stdin)" >&2
  exit 2
}

fail() {
  echo "build.sh: $*" >&2
  exit 1
}

check_tag() {
  case $1 in
    sha-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;;
    *) usage "TAG must be sha-<12 lower-case hex digits>, got '$1'" ;;
  esac
}

check_sha() {
  # 40 characters, all lower-case hex.
  [ "${#1}" -eq 40 ] || usage "GIT_SHA must be 40 lower-case hex digits, got '$1'"
  case $1 in
    *[!0-9a-f]*) usage "GIT_SHA must be 40 lower-case hex digits, got '$1'" ;;
  esac
}

registry() {
  [ -n "${CODEXK8S_REGISTRY:-}" ] || fail "CODEXK8S_REGISTRY is not set (the StatefulSet buildkitd sets it to the registry Service)"
  printf '%s\n' "$CODEXK8S_REGISTRY"
}

# present | absent, from the registry's answer to the manifest URL (GET, manifest media types accepted).
# BusyBox wget exits 1 for every failure, so the status line of -S decides: 200 present, 404 absent, else error.
lookup() {
  url="http://$(registry)/v2/$REPO/manifests/$1"
  answer=$(wget -q -S --spider --header "Accept: $ACCEPT" "$url" 2>&1) || true
  status=$(printf '%s\n' "$answer" | sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' | tail -n 1)
  case $status in
    200) echo present ;;
    404) echo absent ;;
    *) fail "the registry did not answer $url with 200 or 404: $(printf '%s' "$answer" | tail -n 3 | tr '\n' ' ')" ;;
  esac
}

cmd_exists() {
  [ "$#" -eq 1 ] || usage "exists takes exactly one argument, TAG"
  check_tag "$1"
  ref="$(registry)/$REPO:$1"
  state=$(lookup "$1")
  echo "$state $ref"
  [ "$state" = present ] || exit 3
}

cmd_build() {
  [ "$#" -eq 2 ] || usage "build takes exactly two arguments, TAG and GIT_SHA"
  check_tag "$1"
  check_sha "$2"
  short=$(printf '%s' "$2" | cut -c1-12)
  [ "$1" = "sha-$short" ] || usage "TAG $1 is not the tag of GIT_SHA $2 (want sha-$short)"
  ref="$(registry)/$REPO:$1"

  # (The lookup runs on its own line: a failing command substitution inside `[ ]` would not stop the script.)
  state=$(lookup "$1")
  if [ "$state" = present ]; then
    # The caller is streaming the context: read it to the end so its side of the pipe does not fail.
    cat >/dev/null
    echo "unchanged $ref"
    return 0
  fi

  work=$(mktemp -d "${TMPDIR:-/tmp}/codex-k8s-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/context"
  tar -x -f - -C "$work/context" || fail "stdin is not a readable tar of the build context"
  [ -f "$work/context/Dockerfile" ] || fail "the build context has no Dockerfile at its root"

  echo "build.sh: building $ref (git $2)" >&2
  buildctl build \
    --progress=plain \
    --frontend dockerfile.v0 \
    --local "context=$work/context" \
    --local "dockerfile=$work/context" \
    --opt "build-arg:GIT_SHA=$2" \
    --output "type=image,name=$ref,push=true,registry.insecure=true" ||
    fail "buildctl build of $ref failed (its output is above)"

  # The push said it worked; the registry must agree before anyone deploys the tag.
  state=$(lookup "$1")
  [ "$state" = present ] || fail "buildctl pushed $ref but the registry does not list it"
  echo "pushed $ref"
}

[ "$#" -ge 1 ] || usage "no command"
command=$1
shift
case $command in
  exists) cmd_exists "$@" ;;
  build) cmd_build "$@" ;;
  *) usage "unknown command '$command'" ;;
esac
