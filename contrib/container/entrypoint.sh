#!/bin/sh
# The container's entrypoint, as registry:2's: a config file as the first argument (or none: the
# image's /etc/docker/registry/config.yml) runs `fastreg serve FILE`; a fastreg subcommand runs it;
# anything else runs as it is (e.g. `sh`).
set -e
case "$1" in
  *.yaml|*.yml) set -- fastreg serve "$@" ;;
  serve|gc|check|version|htpasswd|gencerts|-*) set -- fastreg "$@" ;;
esac
exec "$@"
