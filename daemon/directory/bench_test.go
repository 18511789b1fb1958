package directory

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkLookup measures recipient lookup latency against the test
// slapd: cold (cache disabled: connect, search, parse every time) and warm
// (answered from the cache). It reports p50 and p99 per lookup.
func BenchmarkLookup(b *testing.B) {
	f := newFixture(b)
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"cold", -1}, {"warm", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			d := mustNew(b, Options{Servers: []string{f.srv.URL}, TTL: bc.ttl, NegativeTTL: bc.ttl})
			ctx := context.Background()
			if _, err := d.Lookup(ctx, "alice@example.org"); err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				certs, err := d.Lookup(ctx, "alice@example.org")
				lat = append(lat, time.Since(start))
				if err != nil || len(certs) != 2 {
					b.Fatalf("%v, %d certificates", err, len(certs))
				}
			}
			slices.Sort(lat)
			if n := len(lat); n > 0 {
				b.ReportMetric(float64(lat[n/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(lat[n*99/100].Nanoseconds()), "p99-ns")
			}
		})
	}
}
