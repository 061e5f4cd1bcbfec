//go:build !unix

package listener

import (
	"net"
	"time"
)

// isConnect needs MSG_PEEK; elsewhere CONNECT is not supported (h1 answers 501).
func isConnect(net.Conn, time.Time) (bool, error) { return false, nil }
