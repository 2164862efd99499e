package frontdoor

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// pipe copies bytes between a and b both ways until both directions end.
// The end of one direction (EOF) half-closes the other side's write, so
// a client that shuts down its sending side still reads the answer. An
// error in either direction, or no byte either way for idle, closes both.
func pipe(a, b net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	errc := make(chan error, 2)
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, &idleReader{c: src, idle: idle, last: &last})
		if err == nil {
			closeWrite(dst)
		}
		errc <- err
	}
	go cp(b, a)
	go cp(a, b)
	for range 2 {
		if err := <-errc; err != nil {
			a.Close()
			b.Close()
		}
	}
}

// closeWrite shuts down the writing side of c when it can.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// idleReader reads c with a deadline of idle after the last byte moved in
// either direction (last, shared by both directions).
type idleReader struct {
	c    net.Conn
	idle time.Duration
	last *atomic.Int64
}

func (r *idleReader) Read(p []byte) (int, error) {
	for {
		r.c.SetReadDeadline(time.Unix(0, r.last.Load()).Add(r.idle))
		n, err := r.c.Read(p)
		if n > 0 {
			r.last.Store(time.Now().UnixNano())
			return n, nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, r.last.Load())) < r.idle {
			continue // the other direction moved: not idle
		}
		return n, err
	}
}
