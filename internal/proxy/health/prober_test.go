package health

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// changes records OnChange calls.
type changes struct {
	mu  sync.Mutex
	got []Status
}

func (c *changes) record(s Status) {
	c.mu.Lock()
	c.got = append(c.got, s)
	c.mu.Unlock()
}

func (c *changes) list() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Status(nil), c.got...)
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// startProber runs a Prober on a fake clock until the test ends.
func startProber(t *testing.T, probe Probe) (*Prober, *fakeClock, *changes) {
	t.Helper()
	clock := newFakeClock()
	ch := &changes{}
	p, err := New(Config{Probe: probe, Clock: clock, Logger: quietLogger, OnChange: ch.record})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return p, clock, ch
}

func TestProberThresholdsAndTransitions(t *testing.T) {
	app := newStatusServer(t, 200)
	const period = 10 * time.Second
	const initialDelay = 5 * time.Second
	p, clock, ch := startProber(t, Probe{
		HTTPGet:          &HTTPGet{Port: serverPort(t, app.Server)},
		InitialDelay:     initialDelay,
		Period:           period,
		SuccessThreshold: 2,
		FailureThreshold: 3,
	})
	start := clock.Now()

	// InitialDelay: nothing is probed before it, and the workload starts
	// unhealthy with no result reported.
	clock.WaitForWaiter(t)
	clock.Advance(initialDelay - time.Second)
	clock.WaitForWaiter(t)
	if n := app.hitCount(); n != 0 {
		t.Fatalf("%d probes before InitialDelay", n)
	}
	if s := p.Status(); s.Healthy || !s.LastProbe.IsZero() || len(ch.list()) != 0 {
		t.Fatalf("before the first probe: status %+v, changes %d", s, len(ch.list()))
	}
	clock.Advance(time.Second)
	clock.WaitForWaiter(t)

	// step 0 is that first probe (at start+initialDelay, app answers 200).
	steps := []struct {
		code        int
		wantHealthy bool
		wantChange  bool // OnChange called for this probe
		wantErr     string
	}{
		{200, false, true, ""}, // first result: 1 of 2 successes, reported unhealthy
		{200, true, true, ""},  // 2 successes: healthy
		{500, true, false, "status 500"},
		{500, true, false, "status 500"},
		{500, false, true, "status 500"}, // 3rd failure flips
		{500, false, false, "status 500"},
		{200, false, false, ""}, // 1 success is not enough
		{500, false, false, "status 500"},
		{200, false, false, ""},
		{200, true, true, ""},
		{500, true, false, "status 500"},
		{200, true, false, ""}, // a success resets the failure run
		{500, true, false, "status 500"},
		{500, true, false, "status 500"},
		{500, false, true, "status 500"},
	}
	wantChanges := 0
	for i, st := range steps {
		if i > 0 {
			app.set(st.code)
			clock.Advance(period)
			clock.WaitForWaiter(t)
		}
		at := start.Add(initialDelay + time.Duration(i)*period)
		s := p.Status()
		if app.hitCount() != i+1 {
			t.Fatalf("step %d: %d probes, want %d", i, app.hitCount(), i+1)
		}
		if s.Healthy != st.wantHealthy || !s.LastProbe.Equal(at) || !strings.Contains(s.LastError, st.wantErr) || (st.wantErr == "") != (s.LastError == "") {
			t.Fatalf("step %d (code %d): status %+v, want healthy=%v error~%q at %v", i, st.code, s, st.wantHealthy, st.wantErr, at)
		}
		if st.code == 200 && (s.ConsecutiveSuccesses == 0 || s.ConsecutiveFailures != 0) ||
			st.code != 200 && (s.ConsecutiveFailures == 0 || s.ConsecutiveSuccesses != 0) {
			t.Fatalf("step %d: counters %+v", i, s)
		}
		if st.wantChange {
			wantChanges++
		}
		got := ch.list()
		if len(got) != wantChanges {
			t.Fatalf("step %d: %d OnChange calls, want %d: %+v", i, len(got), wantChanges, got)
		}
		if st.wantChange {
			last := got[len(got)-1]
			if last != s || !last.Changed.Equal(at) {
				t.Fatalf("step %d: OnChange got %+v, want %+v changed at %v", i, last, s, at)
			}
		} else if s.Changed.After(at.Add(-period)) {
			t.Fatalf("step %d: Changed moved to %v without a transition", i, s.Changed)
		}
	}
	if s := p.Status(); s.ConsecutiveFailures != 3 {
		t.Errorf("final ConsecutiveFailures = %d, want 3", s.ConsecutiveFailures)
	}
}

func TestProberDefaultsFirstResult(t *testing.T) {
	for _, tt := range []struct {
		name    string
		code    int
		healthy bool
	}{{"success reports healthy at once", 200, true}, {"failure reports unhealthy at once", 503, false}} {
		t.Run(tt.name, func(t *testing.T) {
			app := newStatusServer(t, tt.code)
			p, clock, ch := startProber(t, Probe{HTTPGet: &HTTPGet{Port: serverPort(t, app.Server)}})
			// No InitialDelay: the first probe runs at once, then sleeps the
			// default period.
			clock.WaitForWaiter(t)
			got := ch.list()
			if len(got) != 1 || got[0].Healthy != tt.healthy {
				t.Fatalf("OnChange calls %+v, want one with healthy=%v", got, tt.healthy)
			}
			if p.Status() != got[0] {
				t.Fatalf("Status %+v != reported %+v", p.Status(), got[0])
			}
			clock.Advance(DefaultPeriod - time.Nanosecond)
			if app.hitCount() != 1 {
				t.Fatalf("probed again before the default period")
			}
			clock.Advance(time.Nanosecond)
			clock.WaitForWaiter(t)
			if app.hitCount() != 2 || len(ch.list()) != 1 {
				t.Fatalf("after one period: %d probes, %d changes", app.hitCount(), len(ch.list()))
			}
		})
	}
}

func TestProberRunTwice(t *testing.T) {
	app := newStatusServer(t, 200)
	p, clock, _ := startProber(t, Probe{HTTPGet: &HTTPGet{Port: serverPort(t, app.Server)}})
	clock.WaitForWaiter(t)
	if err := p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "concurrently") {
		t.Fatalf("second Run = %v", err)
	}
}

// TestProberCancelDuringProbe: a probe cut short by shutdown is not
// recorded as a failure, and Run returns promptly.
func TestProberCancelDuringProbe(t *testing.T) {
	clock := newFakeClock()
	ch := &changes{}
	started := filepath.Join(t.TempDir(), "started")
	p, err := New(Config{
		Probe:    Probe{Exec: &Exec{Command: []string{"sh", "-c", "touch " + started + "; exec sleep 1000"}}, Timeout: time.Minute},
		Clock:    clock,
		Logger:   quietLogger,
		OnChange: ch.record,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "the probe command to start", func() bool { _, err := os.Stat(started); return err == nil })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if s := p.Status(); !s.LastProbe.IsZero() || len(ch.list()) != 0 {
		t.Fatalf("cancelled probe was recorded: %+v", s)
	}
}

// TestProberRealClock is a smoke test of the default clock.
func TestProberRealClock(t *testing.T) {
	app := newStatusServer(t, 200)
	healthy := make(chan Status, 1)
	p, err := New(Config{
		Probe:  Probe{HTTPGet: &HTTPGet{Port: serverPort(t, app.Server)}, Period: 20 * time.Millisecond, SuccessThreshold: 2},
		Logger: quietLogger,
		OnChange: func(s Status) {
			if s.Healthy {
				healthy <- s
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	select {
	case s := <-healthy:
		if s.ConsecutiveSuccesses != 2 {
			t.Errorf("healthy after %d successes", s.ConsecutiveSuccesses)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("never healthy: %+v", p.Status())
	}
}
