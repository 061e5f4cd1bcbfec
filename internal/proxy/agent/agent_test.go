package agent

import (
	"testing"
)

func TestNode(t *testing.T) {
	n := Node(Config{Namespace: "prod", ServiceAccount: "reviews", IP: "10.0.0.5", WorkloadName: "reviews-v1",
		Labels: map[string]string{"app": "reviews", "version": "v1"}})
	if n.GetId() != "sidecar~10.0.0.5~reviews-v1.prod~prod.svc.cluster.local" {
		t.Errorf("id %q", n.GetId())
	}
	f := n.GetMetadata().GetFields()
	if f["NAMESPACE"].GetStringValue() != "prod" || f["SERVICE_ACCOUNT"].GetStringValue() != "reviews" ||
		f["INSTANCE_IPS"].GetStringValue() != "10.0.0.5" || f["WORKLOAD_NAME"].GetStringValue() != "reviews-v1" ||
		f["LABELS"].GetStructValue().GetFields()["version"].GetStringValue() != "v1" {
		t.Errorf("metadata %v", f)
	}
	if Node(Config{NodeID: "custom", IP: "1.2.3.4"}).GetId() != "custom" {
		t.Error("--node-id not honoured")
	}
}

func TestParseLabels(t *testing.T) {
	got, err := ParseLabels("app=reviews, version=v1,,empty=")
	if err != nil || len(got) != 3 || got["app"] != "reviews" || got["version"] != "v1" || got["empty"] != "" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParseLabels("novalue"); err == nil {
		t.Error("want an error for a label without =")
	}
}

func TestAdminMustBeLoopback(t *testing.T) {
	_, err := New(Config{XDSAddr: "127.0.0.1:1", AdminAddr: "0.0.0.0:0", HTTPProxyPort: 0})
	if err == nil {
		t.Fatal("admin on 0.0.0.0 accepted")
	}
}
