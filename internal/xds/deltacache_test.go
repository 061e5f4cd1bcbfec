package xds

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/translate"
)

// dcStream drives one delta ADS stream against a cache the way
// go-control-plane's delta server does: per type a subscription, a watch
// cancelled before each request, returned resources set from each
// response, and (here) an ACK right after every response.
type dcStream struct {
	t       *testing.T
	c       cache.ConfigWatcher
	node    *corev3.Node
	ch      chan cache.DeltaResponse
	subs    map[string]*stream.Subscription
	cancels map[string]func()
	nonce   int
	log     []string
}

func newDCStream(t *testing.T, c cache.ConfigWatcher) *dcStream {
	return &dcStream{t: t, c: c, node: &corev3.Node{Id: "n1"}, ch: make(chan cache.DeltaResponse, 16),
		subs: map[string]*stream.Subscription{}, cancels: map[string]func(){}}
}

func (s *dcStream) request(typeURL string, sub, unsub []string, nonce string) {
	st, ok := s.subs[typeURL]
	if !ok {
		v := stream.NewDeltaSubscription(sub, unsub, nil, true)
		st = &v
		s.subs[typeURL] = st
	} else {
		if c := s.cancels[typeURL]; c != nil {
			c()
		}
		st.UpdateResourceSubscriptions(sub, unsub)
	}
	req := &discovery.DeltaDiscoveryRequest{Node: s.node, TypeUrl: typeURL, ResponseNonce: nonce,
		ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}
	cancel, err := s.c.CreateDeltaWatch(req, *st, s.ch)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cancels[typeURL] = cancel
	s.settle()
}

// settle processes responses (ACKing each) until none is pending.
func (s *dcStream) settle() {
	for {
		select {
		case resp := <-s.ch:
			r, err := resp.GetDeltaDiscoveryResponse()
			if err != nil {
				s.t.Fatal(err)
			}
			typ := resp.GetDeltaRequest().GetTypeUrl()
			var names []string
			for _, res := range r.GetResources() {
				names = append(names, res.GetName())
			}
			slices.Sort(names)
			removed := slices.Sorted(slices.Values(r.GetRemovedResources()))
			s.log = append(s.log, fmt.Sprintf("%s +%v -%v", shortType(typ), names, removed))
			s.subs[typ].SetReturnedResources(resp.GetNextVersionMap())
			s.nonce++
			s.cancels[typ] = nil
			s.request(typ, nil, nil, strconv.Itoa(s.nonce))
		default:
			return
		}
	}
}

func (s *dcStream) lastNonce() string {
	if s.nonce == 0 {
		return ""
	}
	return strconv.Itoa(s.nonce)
}

func (s *dcStream) take() string {
	slices.Sort(s.log)
	out := strings.Join(s.log, "; ")
	s.log = nil
	return out
}

// dcSnapshot builds a snapshot with the named clusters and endpoints; a
// name may carry a content suffix ("c1=v2") to change the resource.
func dcSnapshot(t *testing.T, clusters, endpoints []string) *snapshot {
	t.Helper()
	res := func(names []string, mk func(name, content string) proto.Message) map[string]proto.Message {
		out := map[string]proto.Message{}
		for _, n := range names {
			name, content, _ := strings.Cut(n, "=")
			out[name] = mk(name, content)
		}
		return out
	}
	cds := res(clusters, func(name, content string) proto.Message {
		return &clusterv3.Cluster{Name: name, AltStatName: content}
	})
	eds := res(endpoints, func(name, content string) proto.Message {
		return &endpointv3.ClusterLoadAssignment{ClusterName: name + content}
	})
	p, err := newPart(&translate.Resources{Clusters: cds, Endpoints: eds}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newClassEntry("k", p, nil)
	e.buildSnapshot()
	return e.snap
}

// TestDeltaCacheMatchesSnapshotCache runs the same script against
// deltaCache and go-control-plane's SnapshotCache: both must send the same
// resources and removals at every step and leave the same returned
// versions, whichever of deltaCache's paths (full diff, class diff, ACK
// shortcut) answers.
func TestDeltaCacheMatchesSnapshotCache(t *testing.T) {
	const cds, eds = translate.ClusterType, translate.EndpointType
	snaps := map[string]*snapshot{
		"empty": dcSnapshot(t, nil, nil),
		"s1":    dcSnapshot(t, []string{"c1", "c2"}, []string{"c1", "c2"}),
		"s2":    dcSnapshot(t, []string{"c1=v2", "c3"}, []string{"c1=v2", "c3"}),
		"s3":    dcSnapshot(t, []string{"c1=v2", "c3", "c4"}, []string{"c1=v2", "c4"}),
		"s4":    dcSnapshot(t, []string{"c1=v3", "c3", "c4"}, []string{"c1=v2", "c3=v2", "c4"}),
		"s5":    dcSnapshot(t, []string{"c1", "c9"}, []string{"c1=v5", "c4", "c9"}),
	}
	type step struct {
		snap       string // set this snapshot, or else:
		typ        string // send this request
		sub, unsub []string
		// fast: deltaCache must answer without the general path (no
		// unsubscribe since the stream's last response of each type).
		fast bool
	}
	script := []step{
		{typ: cds, sub: []string{"*"}}, // explicit wildcard before any snapshot: parked
		{snap: "empty"},                // the first wildcard request is answered even when empty
		{snap: "s1"},
		{typ: eds, sub: []string{"c1"}},
		{typ: eds, sub: []string{"c2"}, fast: true},
		{snap: "s1", fast: true}, // same content: nothing
		{snap: "s2", fast: true}, // c1 changed, c2 removed, c3 added
		{typ: eds, sub: []string{"c3"}, unsub: []string{"c2"}},
		{snap: "s3", fast: true},
		{typ: cds, unsub: []string{"c3"}}, // wildcard + explicit unsubscribe: resend c3
		{snap: "s4"},
		{typ: eds, unsub: []string{"c1"}},
		{snap: "s2"},                     // back to an older set
		{typ: cds, unsub: []string{"*"}}, // leave wildcard
		{snap: "s3"},
		{typ: cds, sub: []string{"c4", "c9"}},
		{snap: "s1"},
		{typ: eds, sub: []string{"c9", "c1"}}, // c9 does not exist yet
		{snap: "s5", fast: true},              // now it does; c2 goes
		{typ: eds, sub: []string{"c4"}, fast: true},
		{snap: "s5", fast: true},
		{typ: eds, sub: []string{"c4", "c2"}, fast: true}, // already subscribed / absent
	}
	ours := newDCStream(t, newDeltaCache())
	sc := cache.NewSnapshotCache(false, cache.IDHash{}, nil)
	theirs := newDCStream(t, sc)
	dc := ours.c.(*deltaCache)
	for i, st := range script {
		fullBefore := dc.fullDiffs
		if st.snap != "" {
			dc.SetSnapshot("n1", snaps[st.snap])
			ours.settle()
			if err := sc.SetSnapshot(t.Context(), "n1", snaps[st.snap]); err != nil {
				t.Fatal(err)
			}
			theirs.settle()
		} else {
			ours.request(st.typ, st.sub, st.unsub, ours.lastNonce())
			theirs.request(st.typ, st.sub, st.unsub, theirs.lastNonce())
		}
		got, want := ours.take(), theirs.take()
		t.Logf("step %d: %s", i, got)
		if got != want {
			t.Errorf("step %d %+v:\n deltaCache:    %s\n SnapshotCache: %s", i, st, got, want)
		}
		if st.fast && dc.fullDiffs != fullBefore {
			t.Errorf("step %d: took the general path; want class diffs or the ACK shortcut", i)
		}
		for _, typ := range []string{cds, eds} {
			a, b := ours.subs[typ], theirs.subs[typ]
			if (a == nil) != (b == nil) || a != nil && !maps.Equal(a.ReturnedResources(), b.ReturnedResources()) {
				t.Errorf("step %d: %s returned resources differ: %v vs %v", i, shortType(typ), a, b)
			}
		}
	}
}

// TestDeltaCacheSharesMarshalledResources checks that responses carry the
// snapshot's pre-marshalled resources rather than copies.
func TestDeltaCacheSharesMarshalledResources(t *testing.T) {
	snap := dcSnapshot(t, []string{"c1"}, nil)
	dc := newDeltaCache()
	dc.SetSnapshot("n1", snap)
	a, b := newDCStream(t, dc), newDCStream(t, dc)
	var first []*discovery.Resource
	for _, s := range []*dcStream{a, b} {
		ch := s.ch
		v := stream.NewDeltaSubscription(nil, nil, nil, true)
		if _, err := dc.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{Node: s.node, TypeUrl: translate.ClusterType}, v, ch); err != nil {
			t.Fatal(err)
		}
		r, _ := (<-ch).GetDeltaDiscoveryResponse()
		if len(r.GetResources()) != 1 {
			t.Fatalf("got %d resources", len(r.GetResources()))
		}
		c := &clusterv3.Cluster{}
		if err := anypb.UnmarshalTo(r.GetResources()[0].GetResource(), c, proto.UnmarshalOptions{}); err != nil || c.GetName() != "c1" {
			t.Fatalf("resource does not decode as cluster c1: %v %v", c, err)
		}
		if first == nil {
			first = r.GetResources()
		} else if first[0] != r.GetResources()[0] {
			t.Error("two streams got separately built resources")
		}
	}
}
