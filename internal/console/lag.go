package console

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Replication lag history: the console samples its region's replication
// report every SampleInterval and keeps the last lagSamples samples in
// memory (per node: the chart starts empty after a restart), as the
// largest lag of each region pair (this region → destination).

type lagSample struct {
	At  time.Time
	Lag map[string]float64 // "src → dst" → ms; a pair without streams is absent
}

// lagRing is a fixed-size ring of samples, safe for concurrent use.
type lagRing struct {
	mu   sync.Mutex
	buf  []lagSample // guarded by mu
	next int         // guarded by mu
	full bool        // guarded by mu
}

func newLagRing(n int) *lagRing { return &lagRing{buf: make([]lagSample, n)} }

func (l *lagRing) add(s lagSample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf[l.next] = s
	l.next = (l.next + 1) % len(l.buf)
	if l.next == 0 {
		l.full = true
	}
}

// samples returns the samples, oldest first.
func (l *lagRing) samples() []lagSample {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		return slices.Clone(l.buf[:l.next])
	}
	return append(slices.Clone(l.buf[l.next:]), l.buf[:l.next]...)
}

// sample runs until Close.
func (c *Console) sample() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.SampleInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.sampleOnce(now)
		}
	}
}

func (c *Console) sampleOnce(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.SampleInterval)
	defer cancel()
	streams, _, err := c.cfg.Replication(ctx)
	if err != nil {
		c.log.Debug("console: lag sample failed", "err", err)
		return
	}
	s := lagSample{At: now, Lag: map[string]float64{}}
	for _, st := range streams {
		pair := pairName(c.cfg.RegionName, st.Destination)
		s.Lag[pair] = max(s.Lag[pair], st.LagMs)
	}
	c.lag.add(s)
}

func pairName(src, dst string) string {
	if src == "" {
		src = "?"
	}
	return src + " → " + dst
}

// chart is the lag chart as the template draws it (inline SVG).
type chart struct {
	W, H, Left, Bottom int
	Window             string
	YMax               string
	Series             []series
	Empty              bool
}

type series struct {
	Pair, Color, Points string
	Dots                []dot // one per sample: a line of one sample shows
	Last                string
}

type dot struct{ X, Y string }

var chartColors = []string{"#0b5cad", "#b5431a", "#2e7d32", "#6a1b9a", "#8d6e00"}

// lagChart draws the samples of the last window ending at now.
func (c *Console) lagChart(now time.Time) *chart {
	ch := &chart{W: 640, H: 180, Left: 50, Bottom: 160}
	window := time.Duration(lagSamples) * c.cfg.SampleInterval
	ch.Window = window.Round(time.Second).String()
	samples := c.lag.samples()
	yMax := 100.0 // ms: a flat line at 0 stays visible
	var pairs []string
	for _, s := range samples {
		for p, v := range s.Lag {
			yMax = max(yMax, v)
			if !slices.Contains(pairs, p) {
				pairs = append(pairs, p)
			}
		}
	}
	slices.Sort(pairs)
	ch.YMax = fmt.Sprintf("%.0f ms", yMax)
	ch.Empty = len(pairs) == 0
	plotW, plotH := float64(ch.W-ch.Left-10), float64(ch.Bottom-10)
	for i, p := range pairs {
		se := series{Pair: p, Color: chartColors[i%len(chartColors)]}
		var pts []byte
		for _, s := range samples {
			v, ok := s.Lag[p]
			if !ok {
				continue
			}
			age := now.Sub(s.At)
			if age > window {
				continue
			}
			x := float64(ch.Left) + 2 + plotW*(1-float64(age)/float64(window))
			y := 10 + (plotH-3)*(1-v/yMax) // 0 ms just above the axis
			pts = fmt.Appendf(pts, "%.1f,%.1f ", x, y)
			se.Dots = append(se.Dots, dot{X: fmt.Sprintf("%.1f", x), Y: fmt.Sprintf("%.1f", y)})
			se.Last = fmt.Sprintf("%.0f ms", v)
		}
		se.Points = string(pts)
		ch.Series = append(ch.Series, se)
	}
	return ch
}
