// Package accesslog writes weft-proxy's optional access log: one JSON
// object per line per HTTP request, with the fields of Envoy's default
// access log format (and Istio's names where they differ), so existing log
// pipelines can parse it.
//
// Lines are encoded on the request's goroutine into a pooled buffer and
// handed to one writer goroutine through a bounded queue; a slow disk or
// pipe drops lines (counted) instead of slowing requests down.
package accesslog

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

// Entry is one request as the proxy saw it. Byte-slice fields may alias
// request buffers: Log copies what it needs before returning.
type Entry struct {
	Start             time.Time
	Duration          time.Duration
	Method            []byte
	Path              []byte // path and query as received
	Protocol          string
	Authority         []byte
	UserAgent         []byte
	RequestID         []byte
	ForwardedFor      []byte
	Traceparent       []byte
	Status            int
	Flags             string
	BytesReceived     int64
	BytesSent         int64
	Upstream          string
	UpstreamCluster   string
	Downstream        string
	Attempts          int
	Reporter          string // "source" (outbound) or "destination" (inbound)
	PeerPrincipal     string
	ConnectionSecured bool
}

// Logger writes entries.
type Logger struct {
	queue   chan *[]byte
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	w       *bufio.Writer
	flushed atomic.Uint64
	dropped atomic.Uint64
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// New starts a Logger writing to w; queue bounds lines waiting to be
// written [4096].
func New(w io.Writer, queue int) *Logger {
	if queue <= 0 {
		queue = 4096
	}
	l := &Logger{queue: make(chan *[]byte, queue), stop: make(chan struct{}), done: make(chan struct{}), w: bufio.NewWriterSize(w, 64<<10)}
	go l.run()
	return l
}

func (l *Logger) run() {
	defer close(l.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case b := <-l.queue:
			l.write(b)
			if len(l.queue) == 0 {
				_ = l.w.Flush()
			}
		case <-tick.C:
			_ = l.w.Flush()
		case <-l.stop:
			for {
				select {
				case b := <-l.queue:
					l.write(b)
				default:
					_ = l.w.Flush()
					return
				}
			}
		}
	}
}

func (l *Logger) write(b *[]byte) {
	_, _ = l.w.Write(*b)
	*b = (*b)[:0]
	bufs.Put(b)
	l.flushed.Add(1)
}

// Log encodes e and queues it; it never blocks.
func (l *Logger) Log(e *Entry) {
	bp := bufs.Get().(*[]byte)
	*bp = Append((*bp)[:0], e)
	select {
	case l.queue <- bp:
	default:
		l.dropped.Add(1)
		bufs.Put(bp)
	}
}

// Close writes what is queued and stops. Lines logged after Close are
// not written (requests still finishing during shutdown are safe).
func (l *Logger) Close() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// Collectors exports weft_access_log_entries_total{result="written|dropped"}.
func (l *Logger) Collectors() []prometheus.Collector {
	return telemetry.OutcomeCounters("weft_access_log_entries_total",
		"Access log lines written, or dropped because the writer fell behind.",
		telemetry.Outcome{Result: "written", N: &l.flushed}, telemetry.Outcome{Result: "dropped", N: &l.dropped})
}

// Append encodes e as one JSON line (Envoy's field names).
func Append(b []byte, e *Entry) []byte {
	b = append(b, `{"start_time":"`...)
	b = e.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, `","method":`...)
	b = appendStr(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendStr(b, e.Path)
	b = append(b, `,"protocol":"`...)
	b = append(b, e.Protocol...)
	b = append(b, `","response_code":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"response_flags":"`...)
	b = append(b, e.Flags...)
	b = append(b, `","bytes_received":`...)
	b = strconv.AppendInt(b, e.BytesReceived, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, e.BytesSent, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
	b = append(b, `,"upstream_host":`...)
	b = appendStr(b, e.Upstream)
	b = append(b, `,"upstream_cluster":`...)
	b = appendStr(b, e.UpstreamCluster)
	b = append(b, `,"downstream_remote_address":`...)
	b = appendStr(b, e.Downstream)
	b = append(b, `,"authority":`...)
	b = appendStr(b, e.Authority)
	b = append(b, `,"user_agent":`...)
	b = appendStr(b, e.UserAgent)
	b = append(b, `,"request_id":`...)
	b = appendStr(b, e.RequestID)
	b = append(b, `,"x_forwarded_for":`...)
	b = appendStr(b, e.ForwardedFor)
	b = append(b, `,"traceparent":`...)
	b = appendStr(b, e.Traceparent)
	b = append(b, `,"upstream_attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, `,"reporter":"`...)
	b = append(b, e.Reporter...)
	b = append(b, `","peer_principal":`...)
	b = appendStr(b, e.PeerPrincipal)
	b = append(b, `,"mtls":`...)
	b = strconv.AppendBool(b, e.ConnectionSecured)
	return append(b, "}\n"...)
}

// appendStr appends s as a JSON string; empty becomes null (Envoy's "-").
func appendStr[T string | []byte](b []byte, s T) []byte {
	if len(s) == 0 {
		return append(b, "null"...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, `\u00`...)
				b = append(b, hexDigit[c>>4], hexDigit[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...) // invalid UTF-8 from the wire
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

const hexDigit = "0123456789abcdef"
