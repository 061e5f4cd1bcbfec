package spiffe

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ID
		ok   bool
	}{
		{"spiffe://cluster.local/ns/shop/sa/cart", ID{"cluster.local", "shop", "cart"}, true},
		{"spiffe://td/ns/a/sa/b", ID{"td", "a", "b"}, true},
		{"https://cluster.local/ns/a/sa/b", ID{}, false},
		{"spiffe://cluster.local/ns/a", ID{}, false},
		{"spiffe://cluster.local/ns/a/sa/b/extra", ID{}, false},
		{"spiffe://cluster.local/sa/a/ns/b", ID{}, false},
		{"spiffe://cluster.local/ns//sa/b", ID{}, false},
		{"spiffe://cluster.local/ns/../sa/b", ID{}, false},
		{"spiffe://Cluster.Local/ns/a/sa/b", ID{}, false},
		{"spiffe://cluster.local:443/ns/a/sa/b", ID{}, false},
		{"spiffe://u@cluster.local/ns/a/sa/b", ID{}, false},
		{"spiffe://cluster.local/ns/a/sa/b?x=1", ID{}, false},
		{"spiffe://cluster.local/ns/a%2Fb/sa/c", ID{}, false},
		{"spiffe:///ns/a/sa/b", ID{}, false},
	} {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
		if tc.ok && got.URL().String() != tc.in {
			t.Errorf("URL() = %q, want %q", got.URL().String(), tc.in)
		}
	}
}
