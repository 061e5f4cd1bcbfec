package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST from linux/netfilter_ipv4.h and, with the
// same value, IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h.
const soOriginalDst = 80

// OriginalDst returns the destination a connection accepted on a REDIRECT
// target was addressed to before netfilter rewrote it, as Envoy's
// original_dst listener filter does.
//
// It reads the socket option on the connection's own descriptor through
// syscall.RawConn.Control: no dup (which os.File would do) and no switch to
// blocking mode. Connections that were not redirected return their local
// address, since conntrack then holds no rewrite; callers that must tell
// the two apart compare with c.LocalAddr().
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("capture: original dst: %T has no file descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("capture: original dst: %w", err)
	}
	// An IPv4 connection accepted on a dual-stack (AF_INET6) listener has
	// a v4-mapped local address; the kernel answers SOL_IP for it, because
	// such sockets use the IPv4 socket ops.
	local, _ := c.LocalAddr().(*net.TCPAddr)
	v4 := local == nil || local.IP.To4() != nil
	var (
		ap     netip.AddrPort
		sysErr error
	)
	ctlErr := rc.Control(func(fd uintptr) {
		if v4 {
			ap, sysErr = originalDst4(int(fd))
			if sysErr == nil || local != nil {
				return
			}
		}
		ap, sysErr = originalDst6(int(fd))
	})
	if err := errors.Join(ctlErr, sysErr); err != nil {
		return netip.AddrPort{}, fmt.Errorf("capture: original dst of %v: %w", c.LocalAddr(), err)
	}
	return ap, nil
}

// originalDst4 reads a struct sockaddr_in. x/sys has no generic getsockopt
// for arbitrary structs; IPv6Mreq is 20 bytes, room for the 16 the kernel
// writes, and avoids unsafe.
func originalDst4(fd int) (netip.AddrPort, error) {
	m, err := unix.GetsockoptIPv6Mreq(fd, unix.SOL_IP, soOriginalDst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt(SOL_IP, SO_ORIGINAL_DST): %w", err)
	}
	raw := m.Multiaddr // sa_family (host order), port (network order), addr
	port := binary.BigEndian.Uint16(raw[2:4])
	addr := netip.AddrFrom4([4]byte(raw[4:8]))
	return netip.AddrPortFrom(addr, port), nil
}

// originalDst6 reads a struct sockaddr_in6 (28 bytes) into IPv6MTUInfo,
// whose first member is exactly a RawSockaddrInet6.
func originalDst6(fd int) (netip.AddrPort, error) {
	info, err := unix.GetsockoptIPv6MTUInfo(fd, unix.SOL_IPV6, soOriginalDst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST): %w", err)
	}
	var p [2]byte
	binary.NativeEndian.PutUint16(p[:], info.Addr.Port) // stored in network order
	addr := netip.AddrFrom16(info.Addr.Addr).Unmap()
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(p[:])), nil
}
