package route

import (
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
)

// Fault is a compiled HTTPFault (fixed delay and/or abort).
type Fault struct {
	Delay           time.Duration
	DelayPerMillion uint32
	// AbortStatus is the HTTP status to answer; AbortGRPC, when non-zero, is a
	// grpc-status to answer with (HTTP 200 + trailers) instead.
	AbortStatus     int
	AbortGRPC       int
	AbortPerMillion uint32
	MaxActive       uint32 // 0: unlimited
}

func faultFrom(pb *faultv3.HTTPFault) (*Fault, error) {
	f := &Fault{}
	if d := pb.GetDelay(); d != nil {
		if d.GetHeaderDelay() != nil {
			return nil, errf("delay.header_delay is not supported")
		}
		f.Delay = d.GetFixedDelay().AsDuration()
		f.DelayPerMillion = perMillion(d.GetPercentage())
	}
	if a := pb.GetAbort(); a != nil {
		switch {
		case a.GetHeaderAbort() != nil:
			return nil, errf("abort.header_abort is not supported")
		case a.GetGrpcStatus() != 0:
			f.AbortGRPC = int(a.GetGrpcStatus())
		default:
			f.AbortStatus = int(a.GetHttpStatus())
		}
		f.AbortPerMillion = perMillion(a.GetPercentage())
	}
	if pb.GetUpstreamCluster() != "" || len(pb.GetHeaders()) > 0 || len(pb.GetDownstreamNodes()) > 0 {
		return nil, errf("fault conditions (upstream_cluster, headers, downstream_nodes) are not supported")
	}
	if pb.GetResponseRateLimit() != nil {
		return nil, errf("response_rate_limit is not supported")
	}
	f.MaxActive = pb.GetMaxActiveFaults().GetValue()
	return f, nil
}

// Decide returns the fault to inject for one request given two independent
// random values: a delay (0 for none) and an abort (abort false for none).
// Envoy draws delay and abort independently.
func (f *Fault) Decide(rndDelay, rndAbort uint32) (delay time.Duration, abort bool) {
	if f == nil {
		return 0, false
	}
	if f.Delay > 0 && rndDelay%fracAll < f.DelayPerMillion {
		delay = f.Delay
	}
	if (f.AbortStatus != 0 || f.AbortGRPC != 0) && rndAbort%fracAll < f.AbortPerMillion {
		abort = true
	}
	return delay, abort
}
