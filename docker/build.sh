#!/usr/bin/env bash
# Builds ferry's container image from a binary compiled on this host.
#
#   docker/build.sh [IMAGE]          # default: ferry:latest (or $FERRY_IMAGE)
#
# 1. go build a static binary (CGO_ENABLED=0, -trimpath, stripped) for
#    linux/$GOARCH (default: the host's architecture);
# 2. docker build with a context holding only that binary and the
#    Dockerfile (FROM scratch: no base image is pulled).
# Prints the image name and size. Needs go and a running Docker daemon.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${1:-${FERRY_IMAGE:-ferry:latest}}"

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "build.sh: go not found" >&2; exit 1; }
command -v docker >/dev/null 2>&1 || { echo "build.sh: docker not found" >&2; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

arch="${GOARCH:-$(go env GOARCH)}"
# The version `ferry version` and the image label report: the nearest tag
# and the commit (git describe), stamped at link time; the VCS revision is
# embedded too where git can tell it (-buildvcs=auto, whatever GOFLAGS says).
version="$(cd "$root" && git describe --tags --always --dirty 2>/dev/null || echo unknown)"
echo "build.sh: go build linux/$arch static binary, version $version" >&2
(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH="$arch" \
	go build -trimpath -buildvcs=auto \
	-ldflags "-s -w -X github.com/ferryrtc/ferry/cli.buildVersion=$version" \
	-o "$ctx/ferry" ./cmd/ferry)
cp "$root/docker/Dockerfile" "$ctx/Dockerfile"

# The classic builder needs no buildx plugin (not packaged everywhere);
# BuildKit is used when buildx is there.
if ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi
echo "build.sh: docker build -t $image" >&2
docker build --quiet -t "$image" \
	--label "org.opencontainers.image.title=ferry" \
	--label "org.opencontainers.image.description=STUN/TURN server for WebRTC" \
	--label "org.opencontainers.image.revision=$version" \
	--platform "linux/$arch" \
	"$ctx" >/dev/null

size="$(docker image inspect -f '{{.Size}}' "$image")"
printf 'build.sh: built %s (%d bytes, %.1f MB)\n' "$image" "$size" "$(awk "BEGIN { print $size / 1000000 }")"
