//go:build !linux

package capture

import (
	"errors"
	"net"
	"net/netip"
)

// OriginalDst is only implemented on Linux, where netfilter REDIRECT and
// SO_ORIGINAL_DST exist.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("capture: original dst: only supported on Linux")
}
