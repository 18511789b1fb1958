package aia

import (
	"context"
	"testing"
)

// BenchmarkIssuers compares a memory cache hit (the signature check against
// the cached certificates only), a disk cache hit (a new Fetcher: read,
// parse, check) and a miss (an HTTP fetch from a loopback server, parse,
// check, disk write).
func BenchmarkIssuers(b *testing.B) {
	f := getFixture(b)
	srv := newServer(b, map[string]route{"/ca.p7c": {body: f.mixedP7C}})
	leaf := f.leaf(b, nil, srv.URL+"/ca.p7c")
	ctx := context.Background()
	check := func(b *testing.B, fe *Fetcher) {
		got, err := fe.Issuers(ctx, leaf)
		if err != nil || len(got) != 1 {
			b.Fatalf("Issuers: %d certificates, %v", len(got), err)
		}
	}

	b.Run("hit", func(b *testing.B) {
		fe := &Fetcher{}
		check(b, fe)
		before := srv.total.Load()
		b.ReportAllocs()
		for b.Loop() {
			check(b, fe)
		}
		if srv.total.Load() != before {
			b.Fatal("a cache hit made a request")
		}
	})
	b.Run("disk-hit", func(b *testing.B) {
		dir := b.TempDir()
		check(b, &Fetcher{CacheDir: dir})
		before := srv.total.Load()
		b.ReportAllocs()
		for b.Loop() {
			check(b, &Fetcher{CacheDir: dir})
		}
		if srv.total.Load() != before {
			b.Fatal("a disk cache hit made a request")
		}
	})
	b.Run("miss", func(b *testing.B) {
		dir := b.TempDir()
		b.ReportAllocs()
		for b.Loop() {
			fe := &Fetcher{CacheDir: dir}
			fe.TTL = 1 // every disk copy is stale at once
			check(b, fe)
		}
	})
}
