#!/usr/bin/env bash
# The official redis image's entrypoint contract, re-implemented for the local stand-in:
# arguments that start with '-' or name a .conf file go to redis-server; the server runs as the
# redis user; without a config file, protected mode is off and it listens on every interface.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = redis-server ]; then
  config_file=
  [ "${2%.conf}" != "${2:-}" ] && config_file="$2"
  if [ -z "$config_file" ] && [[ " $* " != *" --protected-mode "* ]]; then
    set -- "$@" --protected-mode no
  fi
  umask 0077
fi
exec "$@"
