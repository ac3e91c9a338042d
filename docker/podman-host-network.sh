#!/usr/bin/env bash
# podman, for podman-compose 1.0.3 (Debian 12) running a service with `network_mode: host`: that
# version still passes the project network (--net NAME --network-alias NAME) and the published
# ports (-p PORT), which podman refuses beside --network host. This drops them for such
# containers and passes everything else through unchanged. Used by docker/smoke.sh only.
args=("$@")
host=0
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
  [[ ${args[i]} == --network && ${args[i + 1]} == host ]] && host=1
done
((host)) || exec podman "$@"
kept=()
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --net | --network-alias | -p) i=$((i + 1)) ;;
    *) kept+=("${args[i]}") ;;
  esac
done
exec podman "${kept[@]}"
