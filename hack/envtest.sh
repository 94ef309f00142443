#!/usr/bin/env bash
# Build a real kube-apiserver and kube-controller-manager for the tests, from Debian's `kubernetes`
# source package (1.20), and install etcd. Prints the API server's path. Cached: later runs return
# at once. The controller manager runs the ResourceQuota controller, without which the API server
# refuses every object a quota covers ("status unknown for quota").
#
#   hack/envtest.sh            # build if needed, print the API server's path
#
# The cache is ${ZEROSERVE_ENVTEST_CACHE:-~/.cache/zeroserve/envtest}. Needs apt (Debian 12),
# about 10-20 minutes of 2 cores the first time, and no network beyond Debian's archive.
set -euo pipefail

cache=${ZEROSERVE_ENVTEST_CACHE:-$HOME/.cache/zeroserve/envtest}
binary=$cache/kube-apiserver
programs=(kube-apiserver kube-controller-manager)
missing=()
for program in "${programs[@]}"; do
  [[ -x $cache/$program ]] || missing+=("$program")
done
if [[ ${#missing[@]} -eq 0 ]] && command -v etcd >/dev/null; then
  echo "$binary"
  exit 0
fi
mkdir -p "$cache"
log() { echo "envtest: $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
if ! command -v go >/dev/null || ! command -v etcd >/dev/null \
   || [[ ! -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]]; then
  log "installing golang-go, etcd-server and Debian's reflect2"
  apt-get update -qq
  apt-get install -y -qq golang-go etcd-server golang-github-modern-go-reflect2-dev >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get source --download-only kubernetes >&2 2>/dev/null; then
  log "adding Debian's source archive (deb-src) to fetch the kubernetes source package"
  cat > /etc/apt/sources.list.d/zeroserve-envtest-src.sources <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  apt-get update -qq
  apt-get source --download-only kubernetes >&2
fi
tar xzf kubernetes_*.orig.tar.gz
tree=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)

# GOPATH mode: module mode fails with "updates to go.mod needed".
export GOPATH=$work/gopath GO111MODULE=off GOFLAGS= CGO_ENABLED=0
mkdir -p "$GOPATH/src/k8s.io"
ln -s "$tree" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"

# The vendored reflect2 crashes with Go >= 1.18 (fatal error: fault in mapiterinit).
log "replacing vendored reflect2 with Debian's"
rm -f vendor/github.com/modern-go/reflect2/*.go vendor/github.com/modern-go/reflect2/*.s
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
   /usr/share/gocode/src/github.com/modern-go/reflect2/*.s vendor/github.com/modern-go/reflect2/

# The tarball lacks pkg/generated/openapi/zz_generated.openapi.go: generate it as the Makefile does.
log "generating the OpenAPI definitions"
go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
# -R: vendor/k8s.io/* are symlinks into staging/, which plain -r would not follow.
inputs=$(grep -Rl --include='*.go' '+k8s:openapi-gen=' pkg vendor/k8s.io/ 2>/dev/null \
  | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
  | xargs -n1 dirname | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
"$work/openapi-gen" --logtostderr -i "$inputs" -p k8s.io/kubernetes/pkg/generated/openapi \
  -O zz_generated.openapi -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
  -r "$work/violations.report" >&2

for program in "${missing[@]}"; do
  log "building $program (10-20 minutes on 2 cores the first time)"
  go build -o "$work/$program" "./cmd/$program"
  mv "$work/$program" "$cache/$program"
done
echo "$binary"
