//go:build linux

package cluster

// Network namespaces: each node runs in its own namespace ("zone"), whose
// eth0 is one end of a veth pair; the other ends hang on a bridge in the
// test's namespace. All addresses are on a private /24 chosen at random
// and checked to be unused; nothing outside the namespaces and the bridge
// this file creates is touched.
//
// A partition of node a from node b installs a blackhole route to b in
// a's namespace and one to a in b's. That cuts every packet between them
// at its source, in both directions: raft messages a sends on stream
// connections b dialed, the ones b sends on streams a dialed, pipeline and
// snapshot POSTs either way, lease forwarding, probes. New connections fail
// at once (EINVAL); established ones stall. The bridge address (the test
// process: clients, the hub simulator) stays reachable from every node, so
// a partitioned node keeps serving clients while it cannot reach a quorum.

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

var netnsCounter atomic.Int64

// netns is NetworkNamespaces.
type netns struct {
	bridge string
	prefix string // "10.x.y."
	names  []string
	veths  []string

	mu        sync.Mutex
	listeners []net.Listener
	routes    map[[2]int]bool // blackholes installed: {in namespace of, to}
}

func newNetns(n int) (nw *netns, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("cluster: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("cluster: network namespaces need the ip command (iproute2)")
	}
	gcStaleNetworks()
	prefix, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	tag := fmt.Sprintf("%d-%s", os.Getpid(), strconv.FormatInt(netnsCounter.Add(1), 36))
	nw = &netns{bridge: "odb" + tag, prefix: prefix, routes: map[[2]int]bool{}}
	defer func() {
		if err != nil {
			nw.close()
			nw = nil
		}
	}()
	if err := ipCmd("link", "add", nw.bridge, "type", "bridge"); err != nil {
		nw.bridge = ""
		return nil, err
	}
	if err := ipCmds([][]string{
		{"addr", "add", prefix + "1/24", "dev", nw.bridge},
		{"link", "set", nw.bridge, "up"},
	}); err != nil {
		return nil, err
	}
	for i := range n {
		if err := nw.addNode(tag, i); err != nil {
			return nil, err
		}
	}
	return nw, nw.selfTest()
}

func (nw *netns) addNode(tag string, i int) error {
	name, veth := fmt.Sprintf("opendps-%s-%d", tag, i), fmt.Sprintf("odv%s%d", tag, i)
	if len(veth) > 15 {
		return fmt.Errorf("cluster: interface name %s too long", veth)
	}
	if err := ipCmd("netns", "add", name); err != nil {
		return err
	}
	nw.names = append(nw.names, name)
	if err := ipCmd("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name); err != nil {
		return err
	}
	nw.veths = append(nw.veths, veth)
	return ipCmds([][]string{
		{"link", "set", veth, "master", nw.bridge, "up"},
		{"-n", name, "addr", "add", nw.ip(i) + "/24", "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", name, "link", "set", "lo", "up"},
	})
}

// selfTest checks that a listener made inside namespace 0 is reachable
// from the test process over the bridge.
func (nw *netns) selfTest() error {
	ln, err := listenIn(nw.names[0], net.JoinHostPort(nw.ip(0), "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("cluster: namespace not reachable over the bridge: %w", err)
	}
	return c.Close()
}

func (nw *netns) ip(i int) string { return nw.prefix + strconv.Itoa(11+i) }

func (nw *netns) command(i int, bin string, args []string) *exec.Cmd {
	// ip netns exec execs the program in place: the pid is the node's.
	return exec.Command("ip", append([]string{"netns", "exec", nw.names[i], bin}, args...)...)
}

func (nw *netns) partitions() bool { return true }

func (nw *netns) describe() string {
	return fmt.Sprintf("network namespaces %s..., bridge %s on %s0/24", nw.names[0], nw.bridge, nw.prefix)
}

// forward listens on 127.0.0.1:port inside every namespace and relays
// each connection to 127.0.0.1:port of the test process.
func (nw *netns) forward(port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for _, name := range nw.names {
		ln, err := listenIn(name, addr)
		if err != nil {
			return err
		}
		nw.mu.Lock()
		nw.listeners = append(nw.listeners, ln)
		nw.mu.Unlock()
		go relay(ln, addr)
	}
	return nil
}

func relay(ln net.Listener, to string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", to)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// listenIn opens a TCP listener inside network namespace name: the
// socket keeps the namespace it was created in. The creating thread
// switches back; if it cannot, it is locked and dies with its goroutine.
func listenIn(name, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("cluster: setns %s: %w", name, err)}
			return
		}
		ln, lerr := net.Listen("tcp", addr)
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{ln, lerr}
	}()
	r := <-ch
	return r.ln, r.err
}

func (nw *netns) cut(a, b int) error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for _, r := range [][2]int{{a, b}, {b, a}} {
		if nw.routes[r] {
			continue
		}
		if err := ipCmd("-n", nw.names[r[0]], "route", "add", "blackhole", nw.ip(r[1])+"/32"); err != nil {
			return err
		}
		nw.routes[r] = true
	}
	return nil
}

func (nw *netns) mend(a, b int) error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var errs []error
	for _, r := range [][2]int{{a, b}, {b, a}} {
		if !nw.routes[r] {
			continue
		}
		if err := ipCmd("-n", nw.names[r[0]], "route", "del", "blackhole", nw.ip(r[1])+"/32"); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(nw.routes, r)
	}
	return errors.Join(errs...)
}

// close removes the namespaces (their veth ends go with them) and the
// bridge. Call it after the node processes are gone.
func (nw *netns) close() {
	nw.mu.Lock()
	for _, ln := range nw.listeners {
		ln.Close()
	}
	nw.listeners = nil
	nw.mu.Unlock()
	for _, name := range nw.names {
		ipCmd("netns", "del", name)
	}
	if nw.bridge != "" {
		ipCmd("link", "del", nw.bridge)
	}
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cluster: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipCmds(cmds [][]string) error {
	for _, c := range cmds {
		if err := ipCmd(c...); err != nil {
			return err
		}
	}
	return nil
}

// freeSubnet picks 10.x.y.0/24 with no address of this host in it.
func freeSubnet() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for range 64 {
		_, sub, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 100+rand.IntN(100), rand.IntN(256)))
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (sub.Contains(ipn.IP) || ipn.Contains(sub.IP)) {
				used = true
				break
			}
		}
		if !used {
			return strings.TrimSuffix(sub.IP.String(), "0"), nil
		}
	}
	return "", errors.New("cluster: no free 10.x.y.0/24 subnet")
}

var (
	staleNS     = regexp.MustCompile(`^opendps-(\d+)-[0-9a-z]+-\d+$`)
	staleBridge = regexp.MustCompile(`^odb(\d+)-[0-9a-z]+$`)
	gcOnce      sync.Once
)

// gcStaleNetworks removes namespaces and bridges this harness created in
// test processes that no longer exist (a test binary killed on timeout
// cannot clean up after itself). Only names of this harness's pattern
// whose process id is dead are touched.
func gcStaleNetworks() {
	gcOnce.Do(func() {
		if os.Geteuid() != 0 {
			return
		}
		if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) > 0 && deadOwner(staleNS, f[0]) {
					ipCmd("netns", "del", f[0])
				}
			}
		}
		ifs, _ := net.Interfaces()
		for _, ifc := range ifs {
			if deadOwner(staleBridge, ifc.Name) {
				ipCmd("link", "del", ifc.Name)
			}
		}
	})
}

func deadOwner(re *regexp.Regexp, name string) bool {
	m := re.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, err := strconv.Atoi(m[1])
	return err == nil && pid != os.Getpid() && !processAlive(pid)
}
