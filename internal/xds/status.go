package xds

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"
)

// Sync states of one proxy and type, as istioctl proxy-status names them.
const (
	StateSynced  = "SYNCED"   // the last version sent was ACKed
	StateStale   = "STALE"    // sent, not yet ACKed
	StateNacked  = "NACKED"   // the last version sent was rejected
	StateNotSent = "NOT SENT" // nothing sent yet
)

// Stream kinds.
const (
	StreamSotW  = "sotw"
	StreamDelta = "delta"
)

// ProxyStatus is one connected proxy's sync state, as served on /debug/syncz.
type ProxyStatus struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Namespace   string    `json:"namespace"`
	ConnectedAt time.Time `json:"connectedAt"`
	// StreamKind is "sotw" or "delta" (of the most recent stream when several are open).
	StreamKind string `json:"streamKind"`
	// PerType is keyed by type URL; the four generated types are always present.
	PerType map[string]TypeStatus `json:"perType"`
}

// TypeStatus is the sync state of one type for one proxy.
type TypeStatus struct {
	Sent      string    `json:"sent,omitempty"`
	Acked     string    `json:"acked,omitempty"`
	Nacked    string    `json:"nacked,omitempty"`
	NackError string    `json:"nackError,omitempty"`
	NackTime  time.Time `json:"nackTime,omitzero"`
	State     string    `json:"state"`
}

// typeState is the mutable tracking behind TypeStatus; guarded by Server.mu.
type typeState struct {
	sentVersion, sentNonce   string
	sentAt                   time.Time
	ackedVersion, ackedNonce string
	nackVersion, nackNonce   string
	nackErr                  string
	nackAt                   time.Time
}

func (t *typeState) status() TypeStatus {
	ts := TypeStatus{Sent: t.sentVersion, Acked: t.ackedVersion, Nacked: t.nackVersion, NackError: t.nackErr, NackTime: t.nackAt}
	switch {
	case t.sentNonce == "":
		ts.State = StateNotSent
	case t.nackNonce == t.sentNonce:
		ts.State = StateNacked
	case t.ackedNonce == t.sentNonce:
		ts.State = StateSynced
	default:
		ts.State = StateStale
	}
	return ts
}

// recordSent notes a response handed to the stream.
func (s *Server) recordSent(key streamKey, typeURL, version, nonce string) {
	now := s.clock.Now()
	s.mu.Lock()
	n := s.nodeOf(key)
	if n != nil {
		t := n.typeState(typeURL)
		t.sentVersion, t.sentNonce, t.sentAt = version, nonce, now
	}
	s.mu.Unlock()
	if n != nil {
		s.metrics.pushes.WithLabelValues(shortType(typeURL)).Inc()
	}
}

// recordRequest interprets a request as initial, ACK or NACK for the
// response it names by nonce. It returns the version the request rejected
// when it is a NACK of the latest response sent (see onSotWRequest).
func (s *Server) recordRequest(key streamKey, typeURL, version, nonce string, errDetail *status.Status) (nacked string) {
	if nonce == "" {
		return "" // initial request or new subscription: nothing to acknowledge
	}
	now := s.clock.Now()
	s.mu.Lock()
	n := s.nodeOf(key)
	if n == nil {
		s.mu.Unlock()
		return ""
	}
	t := n.typeState(typeURL)
	if nonce != t.sentNonce {
		s.mu.Unlock() // stale: answers a response that was superseded
		return ""
	}
	if errDetail == nil {
		first := t.ackedNonce != nonce
		t.ackedVersion, t.ackedNonce = t.sentVersion, nonce
		lat := now.Sub(t.sentAt)
		s.mu.Unlock()
		if first {
			s.metrics.ackLatency.WithLabelValues(shortType(typeURL)).Observe(lat.Seconds())
		}
		return ""
	}
	msg := errDetail.GetMessage()
	newNack := t.nackNonce != nonce
	// Log once per distinct rejection, not once per retry of the same one.
	logIt := newNack && (t.nackVersion != t.sentVersion || t.nackErr != msg)
	t.nackVersion, t.nackNonce, t.nackErr, t.nackAt = t.sentVersion, nonce, msg, now
	nacked, id := t.sentVersion, n.id
	s.mu.Unlock()
	if newNack {
		s.metrics.rejects.WithLabelValues(shortType(typeURL)).Inc()
	}
	if logIt {
		s.log.Warn("proxy rejected config", "proxy", id, "type", shortType(typeURL), "version", nacked, "error", msg)
	}
	return nacked
}

// Status returns the sync state of every connected proxy, sorted by id.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for _, n := range s.nodes {
		ps := ProxyStatus{ID: n.id, Type: n.proxy.Type.String(), Namespace: n.proxy.Namespace,
			ConnectedAt: n.connectedAt, StreamKind: n.kind, PerType: map[string]TypeStatus{}}
		for _, t := range xdsTypes {
			ps.PerType[t] = TypeStatus{State: StateNotSent}
		}
		for t, st := range n.types {
			ps.PerType[t] = st.status()
		}
		out = append(out, ps)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b ProxyStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// SynczHandler serves Status() as JSON, for weftd's /debug/syncz.
func (s *Server) SynczHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s.Status()); err != nil {
			s.log.Debug("syncz: write", "error", err)
		}
	})
}
