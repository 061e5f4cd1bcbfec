package agent

import (
	"os"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Node builds the xDS node with Istio's agent conventions: id
// "sidecar~IP~NAME.NS~NS.svc.cluster.local" and metadata NAMESPACE,
// SERVICE_ACCOUNT, LABELS, INSTANCE_IPS, WORKLOAD_NAME, AUTO_REGISTER_GROUP, NETWORK.
func Node(cfg Config) *corev3.Node {
	ns := cfg.Namespace
	if ns == "" {
		ns = "default"
	}
	name := cfg.WorkloadName
	if name == "" {
		name, _ = os.Hostname()
	}
	id := cfg.NodeID
	if id == "" {
		id = "sidecar~" + cfg.IP + "~" + name + "." + ns + "~" + ns + ".svc.cluster.local"
	}
	fields := map[string]*structpb.Value{
		"NAMESPACE":     structpb.NewStringValue(ns),
		"WORKLOAD_NAME": structpb.NewStringValue(name),
	}
	if cfg.ServiceAccount != "" {
		fields["SERVICE_ACCOUNT"] = structpb.NewStringValue(cfg.ServiceAccount)
	}
	if cfg.IP != "" {
		fields["INSTANCE_IPS"] = structpb.NewStringValue(cfg.IP)
	}
	if cfg.AutoRegisterGroup != "" {
		fields["AUTO_REGISTER_GROUP"] = structpb.NewStringValue(cfg.AutoRegisterGroup)
	}
	if cfg.Network != "" {
		fields["NETWORK"] = structpb.NewStringValue(cfg.Network)
	}
	if len(cfg.Labels) > 0 {
		lf := make(map[string]*structpb.Value, len(cfg.Labels))
		for k, v := range cfg.Labels {
			lf[k] = structpb.NewStringValue(v)
		}
		fields["LABELS"] = structpb.NewStructValue(&structpb.Struct{Fields: lf})
	}
	return &corev3.Node{
		Id:            id,
		Cluster:       name + "." + ns,
		Metadata:      &structpb.Struct{Fields: fields},
		UserAgentName: "weft-proxy",
	}
}

// ParseLabels parses "k=v,k2=v2".
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &labelError{kv}
		}
		out[k] = v
	}
	return out, nil
}

type labelError struct{ kv string }

func (e *labelError) Error() string { return "agent: label " + e.kv + " is not key=value" }
