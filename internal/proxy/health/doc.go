// Package health owns the application health probe that weft-proxy runs on
// a host for its WorkloadGroup's readinessProbe (httpGet, tcpSocket, exec or
// grpc), with Kubernetes readiness-probe semantics, and the proxy's own
// readiness endpoint (15021 /healthz/ready).
//
// A Prober runs one Probe on a schedule and calls OnChange when the result
// flips, so the agent can tell weftd at once; weftd then marks the endpoint
// healthy or unhealthy in EDS. The package does not know how results travel:
// the agent implements Reporter over its xDS stream (see
// HealthInformationType and DiscoveryRequest for the proposed message).
//
// weft-proxy links this package, so it imports neither Kubernetes nor the
// control plane nor istio.io/api: the WorkloadGroup probe arrives as the
// JSON protojson makes of it, read by ParseIstioProbe.
package health
