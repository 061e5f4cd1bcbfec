package upstream

import (
	"math"
	"sort"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

const (
	lbRoundRobin   = clusterv3.Cluster_ROUND_ROBIN
	lbLeastRequest = clusterv3.Cluster_LEAST_REQUEST
	lbRandom       = clusterv3.Cluster_RANDOM
	lbRingHash     = clusterv3.Cluster_RING_HASH
	lbMaglev       = clusterv3.Cluster_MAGLEV
)

// Hash64 is the stable 64-bit hash used for ring hash and maglev keys and for
// hash policies (FNV-1a with a final avalanche mix). It does not allocate.
func Hash64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix64(h)
}

// HashString is Hash64 for a string without converting it.
func HashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

func mix64(h uint64) uint64 { // splitmix64 finaliser
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

type ringEntry struct {
	hash uint64
	idx  uint32
}

// buildRing builds a Ketama-style ring like Envoy's: each host gets a number
// of points proportional to its weight, the ring holding at least minSize and
// at most maxSize points; point i of host h is hash("addr_i").
func buildRing(hosts []*Endpoint, w []float64, minSize, maxSize uint64) []ringEntry {
	if len(hosts) == 0 {
		return nil
	}
	var total, minNorm float64
	for _, x := range w {
		total += x
	}
	minNorm = 1
	for _, x := range w {
		minNorm = math.Min(minNorm, x/total)
	}
	scale := math.Min(math.Ceil(minNorm*float64(minSize))/minNorm, float64(maxSize))
	ring := make([]ringEntry, 0, int(scale)+len(hosts))
	var target, have float64
	for i, h := range hosts {
		target += w[i] / total * scale
		n := int(math.Floor(target - have + 0.5))
		for k := 0; k < n; k++ {
			ring = append(ring, ringEntry{hash: HashString(h.Addr + "_" + strconv.Itoa(k)), idx: uint32(i)})
		}
		have += float64(n)
	}
	sort.Slice(ring, func(i, j int) bool { return ring[i].hash < ring[j].hash })
	return ring
}

func ringPick(lv *level, hash uint64, c *Cluster) *Endpoint {
	r := lv.ring
	if len(r) == 0 {
		return nil
	}
	i := sort.Search(len(r), func(i int) bool { return r[i].hash >= hash })
	for k := 0; k < len(r); k++ {
		ep := lv.healthy[r[(i+k)%len(r)].idx]
		if c.available(ep) {
			return ep
		}
	}
	return nil
}

// buildMaglev fills a table of size m (prime) with host indexes using the
// Maglev permutation (offset, skip from two hashes of the host address),
// weighted like Envoy: a host claims a slot in round r only when its
// normalised weight says its turn has come.
func buildMaglev(hosts []*Endpoint, w []float64, m uint64) []uint32 {
	n := len(hosts)
	if n == 0 {
		return nil
	}
	var maxW float64
	for _, x := range w {
		maxW = math.Max(maxW, x)
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	acc := make([]float64, n)
	for i, h := range hosts {
		offset[i] = HashString(h.Addr) % m
		skip[i] = HashString(h.Addr+"#skip")%(m-1) + 1
	}
	const empty = math.MaxUint32
	table := make([]uint32, m)
	for i := range table {
		table[i] = empty
	}
	filled := uint64(0)
	for filled < m {
		for i := 0; i < n && filled < m; i++ {
			acc[i] += w[i] / maxW
			if acc[i] < 1 {
				continue
			}
			acc[i]--
			for {
				c := (offset[i] + next[i]*skip[i]) % m
				next[i]++
				if table[c] == empty {
					table[c] = uint32(i)
					filled++
					break
				}
			}
		}
	}
	return table
}

func maglevPick(lv *level, hash uint64, c *Cluster) *Endpoint {
	t := lv.maglev
	if len(t) == 0 {
		return nil
	}
	i := hash % uint64(len(t))
	ep := lv.healthy[t[i]]
	if c.available(ep) {
		return ep
	}
	// Ejected: walk the table so the fallback is still key-stable.
	for k := uint64(1); k < uint64(len(t)); k++ {
		ep = lv.healthy[t[(i+k)%uint64(len(t))]]
		if c.available(ep) {
			return ep
		}
	}
	return nil
}
