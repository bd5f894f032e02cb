// Package docker tests ferry's container image end to end.
//
// The test builds the image with docker/build.sh (a host-built static binary
// on scratch), runs it with --network host on free loopback ports, and
// checks that a STUN Binding and a TURN relay round trip through the
// container succeed, that the container turns healthy through
// `ferry healthcheck`, that it runs as a non-root user, that /metrics counts
// the relayed packets, that `docker stop` (SIGTERM, drain) exits 0, and that
// the image is smaller than 25 MB (its size is printed).
//
// It needs the docker CLI and a running dockerd (scripts/install-test-deps.sh
// docker installs docker.io and starts one). Without them the test skips,
// unless CI=true, where it fails. All traffic stays on 127.0.0.1.
package docker
