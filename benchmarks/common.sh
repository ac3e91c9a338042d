# Shared by the benchmark scripts (sourced, not run): arguments, the build to use, peers from
# Debian, a scratch directory and the processes to stop when the script ends.
#   need_build TARGET...      builds build/release (or $IDNODE_BUILD) if a target is missing
#   need_packages CMD=PKG...  installs the Debian package of each missing command
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
records=1000000
seconds=10
while (($#)); do
  case $1 in
    --records) records=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
done
build=${IDNODE_BUILD:-build/release}
sudo=""
[[ $(id -u) -ne 0 ]] && sudo=sudo

need_packages() {
  local pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair#*=}" >/dev/null
  done
}

need_build() {
  local target
  for target in "$@"; do
    if [[ ! -x $build/$target ]]; then
      cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$build" -j2 >/dev/null
      return
    fi
  done
}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
cpu_us_per() { python3 -c "print(round(($2-$1)/$(getconf CLK_TCK)*1e6/max(1,$3),2))"; }
