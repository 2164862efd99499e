package mqttfront_test

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// rawConn speaks MQTT byte by byte, for what no client library sends.
type rawConn struct {
	t testing.TB
	net.Conn
	r *bufio.Reader
}

func (ts *testServer) dialRaw(t testing.TB, cert *tls.Certificate) *rawConn {
	t.Helper()
	c, err := tls.Dial("tcp", ts.addr, ts.clientTLS(cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

// str is an MQTT UTF-8 string: 2-byte length, then the bytes.
func str(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

// packet frames a packet: first byte, remaining length, body.
func packet(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// connectPacket builds a CONNECT: protocol name and level, flags,
// keep-alive 60, MQTT 5 properties (empty) when level is 5, then the
// payload fields that are not "" (will topic and message when will).
type connectFields struct {
	name                       string
	level                      byte
	clientID, user, pass, will string
	keepAlive                  uint16
}

func connectPacket(f connectFields) []byte {
	flags := byte(0x02) // clean session
	if f.user != "" {
		flags |= 0x80
	}
	if f.pass != "" {
		flags |= 0x40
	}
	if f.will != "" {
		flags |= 0x04
	}
	body := append(str(f.name), f.level, flags)
	body = binary.BigEndian.AppendUint16(body, f.keepAlive)
	if f.level == 5 {
		body = append(body, 0)
	}
	body = append(body, str(f.clientID)...)
	if f.will != "" {
		if f.level == 5 {
			body = append(body, 0)
		}
		body = append(body, str(f.will)...)
		body = append(body, str("bye")...)
	}
	if f.user != "" {
		body = append(body, str(f.user)...)
	}
	if f.pass != "" {
		body = append(body, str(f.pass)...)
	}
	return packet(0x10, body)
}

func (c *rawConn) send(b []byte) {
	c.t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one packet: its first byte and body; ok false when the
// server closed the connection instead.
func (c *rawConn) read() (first byte, body []byte, ok bool) {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	first, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, false
	}
	n, mul := 0, 1
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, false
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, false
	}
	return first, body, true
}

// closed asserts that the server closes the connection (possibly after
// packets such as a DISCONNECT, which are skipped) within wait.
func (c *rawConn) closed(wait time.Duration) {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	for {
		if _, err := c.r.ReadByte(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatalf("connection still open after %v", wait)
			}
			return
		}
	}
}

// connack sends a CONNECT and returns the CONNACK body (sp, code).
func (c *rawConn) connack(f connectFields) []byte {
	c.t.Helper()
	c.send(connectPacket(f))
	first, body, ok := c.read()
	if !ok {
		c.t.Fatalf("no CONNACK: connection closed")
	}
	if first != 0x20 {
		c.t.Fatalf("first packet %#x, want CONNACK", first)
	}
	return body
}

// subscribePacket subscribes filter at qos with packet id 1.
func subscribePacket(id uint16, filter string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	body = append(append(body, str(filter)...), qos)
	return packet(0x82, body)
}

// publishPacket publishes at qos (packet id 7 when qos > 0).
func publishPacket(topic string, qos byte, payload []byte) []byte {
	body := str(topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, 7)
	}
	return packet(0x30|qos<<1, append(body, payload...))
}
