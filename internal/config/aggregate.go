package config

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// AggregatorConfig configures an Aggregator.
type AggregatorConfig struct {
	// Sources in priority order: when two sources define the same key, the
	// earlier one wins (see CrossValidate).
	Sources []Source
	Logger  *slog.Logger
	// Debounce groups bursts of source changes into one snapshot. Default 100ms.
	Debounce time.Duration
}

// Aggregator merges all sources into one immutable Snapshot: it runs the
// sources, and on any change (debounced) collects their Contents, runs
// CrossValidate and publishes a new versioned Snapshot to subscribers.
type Aggregator struct {
	cfg     AggregatorConfig
	log     *slog.Logger
	current atomic.Pointer[Snapshot]
	errors  atomic.Int64
	version uint64 // only touched by the Run goroutine

	mu   sync.Mutex
	subs []chan *Snapshot
}

// NewAggregator returns an aggregator; nothing runs until Run.
func NewAggregator(cfg AggregatorConfig) *Aggregator {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Aggregator{cfg: cfg, log: log.With("component", "config")}
}

// Current returns the latest snapshot, or nil before the first one.
func (a *Aggregator) Current() *Snapshot { return a.current.Load() }

// ErrorCount is the number of error diagnostics in the current snapshot, for
// a metric.
func (a *Aggregator) ErrorCount() int { return int(a.errors.Load()) }

// Subscribe returns a channel that receives every new snapshot. It holds at
// most one value: a slow reader skips straight to the latest snapshot and
// never blocks the aggregator. The current snapshot, if any, is delivered at once.
func (a *Aggregator) Subscribe() <-chan *Snapshot {
	ch := make(chan *Snapshot, 1)
	a.mu.Lock()
	a.subs = append(a.subs, ch)
	if s := a.current.Load(); s != nil {
		ch <- s
	}
	a.mu.Unlock()
	return ch
}

// Run runs every source and publishes snapshots until ctx is done or a
// source fails; then it stops the other sources and returns.
func (a *Aggregator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	n := len(a.cfg.Sources)
	synced := make([]atomic.Bool, n)
	kick := make(chan struct{}, 1)
	failed := make(chan error, n)
	var wg sync.WaitGroup
	for i, src := range a.cfg.Sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := src.Run(ctx, func() {
				synced[i].Store(true)
				select {
				case kick <- struct{}{}:
				default:
				}
			})
			if err != nil && ctx.Err() == nil {
				failed <- fmt.Errorf("config: source %s: %w", src.Name(), err)
			}
		}()
	}
	defer wg.Wait()

	allSynced := func() bool {
		for i := range synced {
			if !synced[i].Load() {
				return false
			}
		}
		return true
	}
	if n == 0 {
		a.publish() // nothing to wait for: an empty config is the truth
	}
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			a.log.Error("config source failed", "err", err)
			return err
		case <-kick:
			if fire == nil && allSynced() {
				fire = time.After(a.cfg.Debounce)
			}
		case <-fire:
			fire = nil
			a.publish()
		}
	}
}

// publish builds and distributes a snapshot from the sources' current contents.
func (a *Aggregator) publish() {
	var (
		objs  []*Object
		diags Diagnostics
	)
	for _, src := range a.cfg.Sources {
		c := src.Contents()
		objs = append(objs, c.Objects...)
		diags = append(diags, c.Diagnostics...)
	}
	kept, xdiags := CrossValidate(objs)
	diags = append(diags, xdiags...)
	diags.Sort()
	a.version++
	snap := NewSnapshot(a.version, kept, diags)
	a.current.Store(snap)
	errs := len(diags.Errors())
	a.errors.Store(int64(errs))
	a.log.Info("config snapshot published", "version", snap.Version, "objects", snap.Len(), "errors", errs, "warnings", len(diags)-errs)

	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ch := range a.subs {
		// Latest wins: drop a stale undelivered snapshot rather than block.
		select {
		case <-ch:
		default:
		}
		select {
		case ch <- snap:
		default:
		}
	}
}
