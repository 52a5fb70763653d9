#!/usr/bin/env bash
# Runs docker-compose.yml on podman (podman-compose) and waits until the suite is healthy.
#   deploy/containers/compose.sh up      start everything, then wait for every /health/ready
#   deploy/containers/compose.sh wait    only wait (another shell started it)
#   deploy/containers/compose.sh down    stop and remove the containers (volumes are kept;
#                                        `down -v` removes them too)
#   deploy/containers/compose.sh ps|logs [service]
# Podman 4.3 runs no HEALTHCHECK by itself and ignores `depends_on: condition`, so `up` polls the
# services' health endpoints (and runs each container's healthcheck once it answers, so
# `podman ps` shows them healthy). QUIMBI_PORT_OFFSET=N moves every published port by N;
# UP_TIMEOUT (seconds, 300) bounds the wait; then demo data is seeded as `make run` does
# (SEED=0 skips it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

COMPOSE_FILE="$ROOT/docker-compose.yml"
OFFSET="${QUIMBI_PORT_OFFSET:-0}"
declare -A PORTS=(
  [standin]=8199 [agents]=8102 [tickets]=8101 [sla]=8103 [scoring]=8104 [ai-proxy]=8105
  [gateway]=8001
)
export STANDIN_PORT=$((8199 + OFFSET)) AGENTS_PORT=$((8102 + OFFSET)) TICKETS_PORT=$((8101 + OFFSET))
export SLA_PORT=$((8103 + OFFSET)) SCORING_PORT=$((8104 + OFFSET)) AI_PROXY_PORT=$((8105 + OFFSET))
export GATEWAY_PORT=$((8001 + OFFSET)) POSTGRES_PORT=$((15432 + OFFSET)) REDIS_PORT=$((16379 + OFFSET))
export KAFKA_PORT=$((19092 + OFFSET))

compose() { "$TOOLS/bin/podman-compose" --project-name quimbi -f "$COMPOSE_FILE" "$@"; }

host_port() { # service -> its published port
  local var="${1^^}_PORT"
  var="${var//-/_}"
  echo "${!var}"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports_free() {
  local name port taken=()
  for name in "${!PORTS[@]}" postgres redis kafka; do
    port="$(host_port "$name")"
    if port_open "$port" && ! podman container exists "quimbi_${name}_1"; then taken+=("$name:$port"); fi
  done
  if [ ${#taken[@]} -gt 0 ]; then
    die "host ports already taken: ${taken[*]} (a native \`make run\`?); set QUIMBI_PORT_OFFSET"
  fi
}

stale_containers() { # a container runs another image than its tag now names
  local name running built
  for name in "${!PORTS[@]}"; do
    running="$(podman container inspect --format '{{.Image}}' "quimbi_${name}_1" 2>/dev/null)" || continue
    built="$(podman image inspect --format '{{.Id}}' "quimbi/$name:latest" 2>/dev/null)" || continue
    [ "$running" != "$built" ] && return 0
  done
  return 1
}

wait_healthy() {
  local timeout="${UP_TIMEOUT:-300}" start now name pending
  start=$(date +%s)
  pending=("${!PORTS[@]}")
  while [ ${#pending[@]} -gt 0 ]; do
    local still=()
    for name in "${pending[@]}"; do
      if curl -sf --max-time 2 "http://127.0.0.1:$(host_port "$name")/health/ready" >/dev/null; then
        podman healthcheck run "quimbi_${name}_1" >/dev/null 2>&1 || true
        log "$name ready after $(($(date +%s) - start)) s on 127.0.0.1:$(host_port "$name")"
      else
        still+=("$name")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    [ ${#pending[@]} -eq 0 ] && break
    now=$(date +%s)
    if [ $((now - start)) -ge "$timeout" ]; then
      compose ps >&2 || true
      die "not ready after ${timeout}s: ${pending[*]} (see: deploy/containers/compose.sh logs <service>)"
    fi
    sleep 1
  done
  local infra
  for infra in postgres redis kafka; do podman healthcheck run "quimbi_${infra}_1" >/dev/null 2>&1 || true; done
  log "all services ready in $(($(date +%s) - start)) s: gateway http://127.0.0.1:$GATEWAY_PORT (docs at /docs)"
}

seed_demo_data() { # as `make run` does, through the gateway (idempotent)
  local uv=(uv)
  command -v uv >/dev/null || uv=(python3 -m uv)
  log "seeding demo data through the gateway (SEED=0 skips it)"
  (cd "$ROOT" && GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" "${uv[@]}" run --quiet python - <<'PY'
import asyncio, os, sys
sys.path.insert(0, "deploy/local")
from demo_data import seed_demo_data
logins = asyncio.run(seed_demo_data(os.environ["GATEWAY_URL"], say=lambda m: print(f"  {m}")))
print("  Logins:")
for role, email, password in logins:
    print(f"    {role:<13} {email:<32} {password}")
PY
  ) || die "seeding demo data failed"
}

case "${1:-up}" in
  up)
    [ -x "$TOOLS/bin/podman-compose" ] || "$HERE/setup.sh"
    docker_api_up || "$HERE/setup.sh" service
    if stale_containers; then
      log "images changed since the containers were created: recreating them"
      compose down >"$LOGS/compose-down.log" 2>&1 || true
    fi
    check_ports_free
    started=$(date +%s)
    log "starting the suite (podman-compose up -d)"
    compose up -d >"$LOGS/compose-up.log" 2>&1 \
      || { tail -n 40 "$LOGS/compose-up.log" >&2; die "podman-compose up failed (see $LOGS/compose-up.log)"; }
    wait_healthy
    log "make up: healthy $(($(date +%s) - started)) s after podman-compose up"
    [ "${SEED:-1}" = 0 ] || seed_demo_data
    ;;
  wait) wait_healthy ;;
  down)
    shift
    # podman-compose leaves the images' anonymous volumes (redis /data, ...) behind: note them.
    anonymous="$(podman ps -a --filter label=io.podman.compose.project=quimbi -q \
      | xargs -r podman inspect --format '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' \
      | tr ' ' '\n' | grep -v '^quimbi_' | grep -v '^$' || true)"
    compose down "$@" >"$LOGS/compose-down.log" 2>&1 \
      || { tail -n 20 "$LOGS/compose-down.log" >&2; die "podman-compose down failed"; }
    # shellcheck disable=SC2086 # a list of volume names
    [ -z "$anonymous" ] || podman volume rm $anonymous >/dev/null 2>&1 || true
    log "the suite is down"
    ;;
  ps) compose ps ;;
  logs) shift; compose logs "$@" ;;
  *) die "usage: $0 up|wait|down [-v]|ps|logs [service]" ;;
esac
