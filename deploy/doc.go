// Package deploy holds no code: it is the Go module that tests pinsync's
// deployment files.
//
// The tests render the Helm chart (with Helm's Go packages, as helm
// template and helm lint do) and the kustomize bases (with kustomize's Go
// API), decode every rendered object strictly into its Go type (unknown or
// misspelt fields fail), check that the chart renders the objects of the
// kustomize base, that the manifests, the configuration file, the KEDA
// ScaledObject, the Strimzi topics and user, docker-compose.yml, the
// Prometheus rules and the Grafana dashboard agree with each other and with
// the names pinsync uses (ports, probe paths, config keys, topics, ACLs,
// metric names), and run the external validators (promtool,
// docker-compose, pinsync check-config) when they are installed. They do
// not start containers or talk to a cluster.
//
// The module is separate from pinsync's own so that k8s.io/api, Helm and
// kustomize stay out of the service's dependencies.
package deploy
