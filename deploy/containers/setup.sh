#!/usr/bin/env bash
# Prepares this machine to build and run the project's containers, idempotently:
#   - podman, runc and debootstrap from Debian's packages (plus Java/Maven for Kafka's jars),
#   - a containers.conf that works here (cgroupfs + runc, no default ulimits),
#   - podman-compose (PyPI) in .local/containers/tools,
#   - the Docker API: `podman system service` on unix:///run/podman/podman.sock.
# A machine with Docker needs none of this: `docker compose up` pulls the public images.
#   deploy/containers/setup.sh            # all of the above
#   deploy/containers/setup.sh service    # only (re)start the Docker API socket
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

install_packages() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v fuse-overlayfs >/dev/null || missing+=(fuse-overlayfs)
  command -v xz >/dev/null || missing+=(xz-utils)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
    >"$LOGS/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed (see $LOGS/apt.log)"
}

configure_podman() {
  local conf=/etc/containers/containers.conf want
  want="$(cat "$HERE/containers.conf")"
  if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
    log "writing $conf (cgroupfs, runc, no default ulimits)"
    mkdir -p /etc/containers
    [ -f "$conf" ] && cp "$conf" "$conf.before-quimbi"
    printf '%s\n' "$want" >"$conf"
  fi
}

install_compose() {
  [ -x "$TOOLS/bin/podman-compose" ] && return 0
  log "installing podman-compose $PODMAN_COMPOSE_VERSION from PyPI into $TOOLS"
  local uv=(uv)
  if ! command -v uv >/dev/null; then
    python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv >>"$LOGS/compose-install.log" 2>&1
    uv=(python3 -m uv)
  fi
  { "${uv[@]}" venv --quiet --python python3.11 "$TOOLS" &&
    "${uv[@]}" pip install --quiet --python "$TOOLS/bin/python" "podman-compose==$PODMAN_COMPOSE_VERSION"; } \
    >"$LOGS/compose-install.log" 2>&1 || die "installing podman-compose failed (see $LOGS/compose-install.log)"
}

start_service() {
  if docker_api_up; then return 0; fi
  log "starting the Docker API (podman system service) on $SOCKET"
  mkdir -p "$(dirname "$SOCKET")"
  rm -f "$SOCKET"
  nohup podman system service --time=0 "unix://$SOCKET" >"$LOGS/podman-service.log" 2>&1 &
  echo $! >"$STATE/podman-service.pid"
  local i
  for ((i = 0; i < 100; i++)); do docker_api_up && return 0; sleep 0.1; done
  die "the podman API did not answer on $SOCKET (see $LOGS/podman-service.log)"
}

case "${1:-all}" in
  all)
    install_packages
    configure_podman
    install_compose
    start_service
    log "ready: podman $(podman version --format '{{.Client.Version}}'), DOCKER_HOST=unix://$SOCKET"
    ;;
  service) start_service ;;
  *) die "usage: $0 [all|service]" ;;
esac
