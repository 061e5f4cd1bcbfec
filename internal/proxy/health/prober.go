package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Clock is the Prober's time source for scheduling and timestamps; tests
// inject a fake one. (Probe timeouts use real time: they bound real I/O.)
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures New.
type Config struct {
	// Probe is the readiness probe to run; zero fields take defaults.
	Probe Probe
	// Clock defaults to the real clock.
	Clock Clock
	// Logger defaults to slog.Default(); records carry component=health.
	Logger *slog.Logger
	// OnChange is called with the new Status after the first probe result
	// and then whenever Healthy flips, from Run's goroutine, in order. It
	// should not block for long: the next probe waits for it.
	OnChange func(Status)
}

// Status is the outcome of probing so far.
type Status struct {
	// Healthy follows Kubernetes readiness: false until SuccessThreshold
	// consecutive successes, then false again after FailureThreshold
	// consecutive failures.
	Healthy bool
	// LastError is the most recent probe's error, empty if it succeeded.
	LastError string
	// LastProbe is when the most recent probe started (zero: none yet).
	LastProbe time.Time
	// ConsecutiveSuccesses and ConsecutiveFailures count the current run of
	// equal results; one of them is zero.
	ConsecutiveSuccesses int
	ConsecutiveFailures  int
	// Changed is when Healthy last changed, or the first result's time.
	Changed time.Time
}

// Prober runs one Probe on a schedule and tracks the workload's readiness.
type Prober struct {
	probe    Probe // defaulted
	check    checker
	clock    Clock
	log      *slog.Logger
	onChange func(Status)

	mu      sync.Mutex
	status  Status
	started bool // a result has been recorded
	running bool // Run is active
}

// New validates cfg.Probe and returns a Prober; call Run to start probing.
func New(cfg Config) (*Prober, error) {
	if err := cfg.Probe.Validate(); err != nil {
		return nil, err
	}
	p := cfg.Probe.withDefaults()
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Prober{
		probe:    p,
		check:    newChecker(&p),
		clock:    cfg.Clock,
		log:      cfg.Logger.With("component", "health", "probe", p.handlerName()),
		onChange: cfg.OnChange,
	}, nil
}

// Status returns the current status; it is safe to call at any time.
func (p *Prober) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Run waits InitialDelay, then probes every Period (measured from the start
// of one probe to the start of the next; a probe that overruns delays the
// next) until ctx ends. It returns ctx.Err(). A probe cut short by ctx is
// not recorded. Run may be called again after it returns, not concurrently.
func (p *Prober) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("health: Prober.Run called concurrently")
	}
	p.running = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
	}()

	if err := p.sleep(ctx, p.probe.InitialDelay); err != nil {
		return err
	}
	for {
		start := p.clock.Now()
		err := p.check(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.record(start, err)
		if err := p.sleep(ctx, start.Add(p.probe.Period).Sub(p.clock.Now())); err != nil {
			return err
		}
	}
}

func (p *Prober) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.clock.After(d):
		return nil
	}
}

// record applies one probe result with the kubelet's threshold rule: the
// state changes to the result's once that result has repeated
// Success/FailureThreshold times in a row.
func (p *Prober) record(at time.Time, err error) {
	p.mu.Lock()
	s := &p.status
	s.LastProbe = at
	if err == nil {
		s.LastError = ""
		s.ConsecutiveSuccesses++
		s.ConsecutiveFailures = 0
	} else {
		s.LastError = err.Error()
		s.ConsecutiveFailures++
		s.ConsecutiveSuccesses = 0
	}
	was := s.Healthy
	switch {
	case err == nil && s.ConsecutiveSuccesses >= p.probe.SuccessThreshold:
		s.Healthy = true
	case err != nil && s.ConsecutiveFailures >= p.probe.FailureThreshold:
		s.Healthy = false
	}
	first := !p.started
	p.started = true
	changed := first || was != s.Healthy
	if changed {
		s.Changed = at
	}
	snap := *s
	p.mu.Unlock()

	if err != nil && p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("probe failed", "error", err, "consecutive_failures", snap.ConsecutiveFailures)
	}
	if !changed {
		return
	}
	if snap.Healthy {
		p.log.Info("workload healthy", "consecutive_successes", snap.ConsecutiveSuccesses)
	} else {
		p.log.Info("workload unhealthy", "error", snap.LastError, "consecutive_failures", snap.ConsecutiveFailures)
	}
	if p.onChange != nil {
		p.onChange(snap)
	}
}

// String renders s for logs and weftctl.
func (s Status) String() string {
	state := "unhealthy"
	if s.Healthy {
		state = "healthy"
	}
	if s.LastError != "" {
		return fmt.Sprintf("%s (last error: %s)", state, s.LastError)
	}
	return state
}
