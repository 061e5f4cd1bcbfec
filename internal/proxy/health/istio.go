package health

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// The wire form of Istio's WorkloadGroup ReadinessProbe as protojson
// writes it (camelCase names, seconds as integers). It is declared here,
// not imported, because weft-proxy must not link istio.io/api.
type istioProbe struct {
	InitialDelaySeconds int32 `json:"initialDelaySeconds"`
	TimeoutSeconds      int32 `json:"timeoutSeconds"`
	PeriodSeconds       int32 `json:"periodSeconds"`
	SuccessThreshold    int32 `json:"successThreshold"`
	FailureThreshold    int32 `json:"failureThreshold"`
	HTTPGet             *struct {
		Path        string `json:"path"`
		Port        uint32 `json:"port"`
		Host        string `json:"host"`
		Scheme      string `json:"scheme"`
		HTTPHeaders []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"httpHeaders"`
	} `json:"httpGet"`
	TCPSocket *struct {
		Host string `json:"host"`
		Port uint32 `json:"port"`
	} `json:"tcpSocket"`
	Exec *struct {
		Command []string `json:"command"`
	} `json:"exec"`
	GRPC *struct {
		Port    uint32 `json:"port"`
		Service string `json:"service"`
	} `json:"grpc"`
}

// ParseIstioProbe reads a WorkloadGroup probe in the JSON form protojson
// gives istio.io/api's ReadinessProbe (what weftd can put in a host's
// bootstrap bundle or an xDS resource) and returns the validated Probe.
// Unknown fields are errors, so a field Weft does not implement is
// reported rather than ignored.
func ParseIstioProbe(b []byte) (Probe, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ip istioProbe
	if err := dec.Decode(&ip); err != nil {
		return Probe{}, fmt.Errorf("health: parse WorkloadGroup probe: %w", err)
	}
	sec := func(s int32) time.Duration { return time.Duration(s) * time.Second }
	p := Probe{
		InitialDelay:     sec(ip.InitialDelaySeconds),
		Period:           sec(ip.PeriodSeconds),
		Timeout:          sec(ip.TimeoutSeconds),
		SuccessThreshold: int(ip.SuccessThreshold),
		FailureThreshold: int(ip.FailureThreshold),
	}
	if h := ip.HTTPGet; h != nil {
		p.HTTPGet = &HTTPGet{Path: h.Path, Port: int(h.Port), Host: h.Host, Scheme: h.Scheme}
		for _, hd := range h.HTTPHeaders {
			p.HTTPGet.Headers = append(p.HTTPGet.Headers, Header{Name: hd.Name, Value: hd.Value})
		}
	}
	if t := ip.TCPSocket; t != nil {
		p.TCPSocket = &TCPSocket{Host: t.Host, Port: int(t.Port)}
	}
	if e := ip.Exec; e != nil {
		p.Exec = &Exec{Command: e.Command}
	}
	if g := ip.GRPC; g != nil {
		p.GRPC = &GRPC{Port: int(g.Port), Service: g.Service}
	}
	if err := p.Validate(); err != nil {
		return Probe{}, err
	}
	return p, nil
}
