// Package workloadmeta owns Istio's description of a workload as telemetry
// sees it: the app, version, canonical service and canonical revision
// derived from its labels, and the "name;namespace;canonical-service;
// canonical-revision;cluster" string Istio puts into an endpoint's "istio"
// filter metadata. weftd writes that metadata into EDS and weft-proxy reads
// it back (and derives its own labels the same way), so both sides of a
// request agree without a metadata-exchange protocol.
package workloadmeta

import "strings"

// Unknown is Istio's value for a label it cannot fill.
const Unknown = "unknown"

// Metadata keys in an endpoint's filter_metadata["istio"] struct.
const (
	// FilterNamespace is the filter_metadata key Istio uses.
	FilterNamespace = "istio"
	// KeyWorkload holds String()'s "name;namespace;service;revision;cluster".
	KeyWorkload = "workload"
	// KeyApp and KeyVersion carry the app and version labels, which the
	// workload string lacks (Istio gets them from metadata exchange).
	KeyApp     = "app"
	KeyVersion = "version"
)

// Workload is one side of a request with Istio's telemetry values filled in
// ("unknown" or Istio's defaults where the source said nothing).
type Workload struct {
	Name, Namespace   string
	App, Version      string
	CanonicalService  string
	CanonicalRevision string
	Cluster           string
}

// FromLabels describes workload name in namespace from its labels, with
// Istio's rules: canonical service from service.istio.io/canonical-name,
// else app.kubernetes.io/name, else app, else the workload name; canonical
// revision from service.istio.io/canonical-revision, else
// app.kubernetes.io/version, else version, else "latest"; app and version
// from the app/version labels (app.kubernetes.io/* as fallback), else
// "unknown". cluster is the mesh cluster id ("" is "unknown": Weft has no
// multi-cluster identity yet).
func FromLabels(name, namespace string, labels map[string]string, cluster string) Workload {
	return Workload{
		Name:              orUnknown(name),
		Namespace:         orUnknown(namespace),
		App:               orUnknown(App(labels)),
		Version:           orUnknown(Version(labels)),
		CanonicalService:  CanonicalService(labels, name),
		CanonicalRevision: CanonicalRevision(labels),
		Cluster:           orUnknown(cluster),
	}
}

// CanonicalService is Istio's canonical service of a workload ("unknown"
// when neither a label nor the workload name says anything).
func CanonicalService(labels map[string]string, workload string) string {
	if s := first(labels, "service.istio.io/canonical-name", "app.kubernetes.io/name", "app"); s != "" {
		return s
	}
	return orUnknown(workload)
}

// CanonicalRevision is Istio's canonical revision ("latest" by default).
func CanonicalRevision(labels map[string]string) string {
	if s := first(labels, "service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"); s != "" {
		return s
	}
	return "latest"
}

// String is Istio's endpoint metadata form
// "name;namespace;canonical-service;canonical-revision;cluster"; an unknown
// cluster is left empty, as Istio does when it has none.
func (w Workload) String() string {
	cluster := w.Cluster
	if cluster == Unknown {
		cluster = ""
	}
	return w.Name + ";" + w.Namespace + ";" + w.CanonicalService + ";" + w.CanonicalRevision + ";" + cluster
}

// Parse reads String's form plus the optional app and version labels
// ("" when absent). Missing or empty fields become "unknown" (canonical
// revision: "latest"); ok is false when s is not the five-field form.
func Parse(s, app, version string) (w Workload, ok bool) {
	f := strings.Split(s, ";")
	if len(f) != 5 {
		return Workload{}, false
	}
	rev := f[3]
	if rev == "" {
		rev = "latest"
	}
	return Workload{
		Name:              orUnknown(f[0]),
		Namespace:         orUnknown(f[1]),
		App:               orUnknown(app),
		Version:           orUnknown(version),
		CanonicalService:  orUnknown(f[2]),
		CanonicalRevision: rev,
		Cluster:           orUnknown(f[4]),
	}, true
}

// App and Version return the app and version labels ("" when absent), the
// values weftd adds next to the workload string.
func App(labels map[string]string) string { return first(labels, "app", "app.kubernetes.io/name") }

// Version: see App.
func Version(labels map[string]string) string {
	return first(labels, "version", "app.kubernetes.io/version")
}

func first(labels map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return Unknown
	}
	return s
}
