// Package deploy holds ferry's Kubernetes deployment: plain manifests in
// kubernetes/ (applied with kubectl apply -k) and a Helm chart in
// helm/ferry/, and the tests that keep them right. The tests decode every
// manifest, and every object the chart renders for a range of values,
// strictly into the Kubernetes API types (an unknown or misspelt field is an
// error), load the ferry configuration each workload would run with through
// ferry's own config loader and validation (file, FERRY_* environment from
// its Secrets and the downward API), and check what the deployment depends
// on: host networking, readiness on /readyz, a drain that fits in the
// termination grace period, capabilities that match the listeners and the
// kernel fast path, and secrets kept out of the ConfigMap. The package has
// no Go API; docs/kubernetes.md describes the deployment.
package deploy
