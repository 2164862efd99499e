package netutil

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestIsLocalhostName(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LocalHost", true},
		{"localhost.", true},
		{"foo.localhost", true},
		{"a.b.localhost", true},
		{"FOO.LOCALHOST.", true},
		{"", false},
		{".", false},
		{"localhost.com", false},
		{"mylocalhost", false},
		{"localhostx", false},
		{"foo.localhost.example.com", false},
		{"127.0.0.1", false},
		{"::1", false},
		{"example.com", false},
	}
	for _, tt := range tests {
		if got := IsLocalhostName(tt.host); got != tt.want {
			t.Errorf("IsLocalhostName(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestDialContextLocalhost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	for _, host := range []string{"foo.localhost", "Hub-1.LOCALHOST", "localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := DialContext(ctx, "tcp", net.JoinHostPort(host, port))
			if err != nil {
				t.Fatalf("DialContext(%s:%s): %v", host, port, err)
			}
			defer c.Close()
			if got, want := c.RemoteAddr().String(), ln.Addr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want %s", got, want)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "hello" {
				t.Errorf("read %q, %v; want %q from the listener", b, err, "hello")
			}
		})
	}
}

func TestDialContextOtherNamesUntouched(t *testing.T) {
	// A name outside .localhost must go through the resolver: an invalid
	// TLD fails to resolve instead of reaching 127.0.0.1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialContext(ctx, "tcp", net.JoinHostPort("foo.localhost.invalid", port))
	if err == nil {
		c.Close()
		t.Fatal("DialContext(foo.localhost.invalid) connected, want a resolution error")
	}
	// An address without a port is passed through and fails as net.Dial does.
	if _, err := DialContext(ctx, "tcp", "foo.localhost"); err == nil || !strings.Contains(err.Error(), "port") {
		t.Errorf("DialContext without port: err = %v, want a missing-port error", err)
	}
}

func TestDialContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c, err := DialContext(ctx, "tcp", "foo.localhost:1"); err == nil {
		c.Close()
		t.Fatal("DialContext with a canceled context succeeded")
	}
}

func TestFreeLoopbackAddr(t *testing.T) {
	a, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("FreeLoopbackAddr = %q, want 127.0.0.1:<port>", a)
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("port of FreeLoopbackAddr is not free: %v", err)
	}
	ln.Close()
}
