// Package deploy holds no code: it is the Go module that tests pinsync's
// deployment files.
//
// The tests decode every Kubernetes manifest in base/ strictly (unknown or
// misspelt fields fail), check that the manifests, the configuration file,
// the KEDA ScaledObject, docker-compose.yml, the Prometheus rules and the
// Grafana dashboard agree with each other and with the names pinsync uses
// (ports, probe paths, config keys, topics, metric names), and run the
// external validators (promtool, docker-compose, kustomize, pinsync
// check-config) when they are installed. They do not start containers or
// talk to a cluster.
//
// The module is separate from pinsync's own so that k8s.io/api stays out of
// the service's dependencies.
package deploy
