package dr

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/dpstest/history"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdClient is a client of every member of region c.
func etcdClient(c *cluster.Cluster) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.EtcdEndpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
}

// regionState is what a region's etcd holds of one instance.
type regionState struct {
	enrollments   map[string]string // id -> deviceId
	registrations map[string]string // id -> registrationValue
	at            time.Time
}

// readState reads instance's enrollments and registrations from region
// c's etcd (linearizable reads).
func readState(ctx context.Context, c *cluster.Cluster, instance string) (regionState, error) {
	cli, err := etcdClient(c)
	if err != nil {
		return regionState{}, err
	}
	defer cli.Close()
	st := regionState{at: time.Now()}
	if st.enrollments, err = readKind(ctx, cli, instance, store.KindEnrollment, func(b []byte) (string, error) {
		var e model.IndividualEnrollment
		err := json.Unmarshal(b, &e)
		return e.DeviceID, err
	}); err != nil {
		return st, err
	}
	st.registrations, err = readKind(ctx, cli, instance, store.KindRegistration, func(b []byte) (string, error) {
		var r model.Registration
		err := json.Unmarshal(b, &r)
		return history.RegistrationValue(r.Status, r.AssignedHub, r.DeviceID), err
	})
	return st, err
}

func readKind(ctx context.Context, cli *clientv3.Client, instance, kind string, value func([]byte) (string, error)) (map[string]string, error) {
	prefix := store.KindPrefix(instance, kind)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := value(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(string(kv.Key), prefix)] = v
	}
	return out, nil
}

// dirEntries reads every directory entry of region c.
func dirEntries(ctx context.Context, c *cluster.Cluster) (map[string]model.DirEntry, error) {
	cli, err := etcdClient(c)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, store.DirPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string]model.DirEntry{}
	for _, kv := range resp.Kvs {
		var d model.DirEntry
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out[d.Name] = d
	}
	return out, nil
}

// replState reads instance's ReplState in region c (nil: none).
func replState(ctx context.Context, c *cluster.Cluster, instance string) (*model.ReplState, error) {
	cli, err := etcdClient(c)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, store.ReplStateKey(instance))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	var rs model.ReplState
	return &rs, json.Unmarshal(resp.Kvs[0].Value, &rs)
}

// waitFor polls cond every 100 ms until it returns nil or d passes; it
// returns cond's last error.
func waitFor(ctx context.Context, d time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		err := cond(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", d, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitStreaming waits until region c receives instance's stream from
// source at epoch, past its base copy.
func waitStreaming(ctx context.Context, c *cluster.Cluster, instance, source string, epoch uint64) error {
	return waitFor(ctx, 60*time.Second, func(ctx context.Context) error {
		rs, err := replState(ctx, c, instance)
		if err != nil {
			return err
		}
		if rs == nil || rs.Source != source || rs.Epoch != epoch || rs.Phase != model.ReplStreaming {
			return fmt.Errorf("%s's replication state of %s: %+v, want streaming from %s at epoch %d", c.Region(), instance, rs, source, epoch)
		}
		return nil
	})
}

// primaries maps every instance to the regions whose entry says primary
// (or fenced: a region that would still be the source).
func primaries(ctx context.Context, rs *cluster.Regions, regions []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, r := range regions {
		es, err := dirEntries(ctx, rs.Region(r))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		for name, d := range es {
			if d.Role == model.RolePrimary || d.Role == model.RoleFenced {
				out[name] = append(out[name], r+"("+d.Role+fmt.Sprintf(",epoch %d)", d.Epoch))
			} else if _, ok := out[name]; !ok {
				out[name] = nil
			}
		}
	}
	return out, nil
}

// onePrimary waits until every instance has exactly one primary entry
// across regions (and no fenced one) and returns the last disagreement.
func onePrimary(ctx context.Context, rs *cluster.Regions, regions []string) (map[string][]string, error) {
	var last map[string][]string
	err := waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		ps, err := primaries(ctx, rs, regions)
		if err != nil {
			return err
		}
		last = ps
		for name, rr := range ps {
			if len(rr) != 1 || strings.Contains(rr[0], model.RoleFenced) {
				return fmt.Errorf("instance %s: primary entries %v, want exactly one primary", name, rr)
			}
		}
		return nil
	})
	return last, err
}

// absent returns the acknowledged writes that keep selects and that st
// does not hold: an acknowledged registration must be there with its
// assignment; for an enrollment, the value held must come from a put
// that is not older than the acknowledged put (acknowledged before it
// was issued).
func absent(ops []Op, st regionState, keep func(Op) bool) []Op {
	puts := map[string][]Op{}
	for _, op := range ops {
		if op.Kind == history.EnrollmentPut && op.Outcome != history.Failed {
			puts[op.Key] = append(puts[op.Key], op)
		}
	}
	var out []Op
	for _, op := range ops {
		if op.Outcome != history.OK || !op.Kind.Write() || !keep(op) {
			continue
		}
		switch op.Kind {
		case history.Register:
			if st.registrations[op.Key] != op.Out {
				out = append(out, op)
			}
		case history.EnrollmentPut:
			final := st.enrollments[op.Key]
			var src *Op
			for i, p := range puts[op.Key] {
				if p.In == final {
					src = &puts[op.Key][i]
				}
			}
			if src == nil || src.Outcome == history.OK && src.Return.Before(op.Call) {
				out = append(out, op)
			}
		}
	}
	return out
}

// describeAbsent is one line per absent write, with what st holds.
func describeAbsent(ops []Op, st regionState) []string {
	var out []string
	for _, op := range ops {
		held := st.registrations[op.Key]
		if op.Kind == history.EnrollmentPut {
			held = st.enrollments[op.Key]
		}
		out = append(out, fmt.Sprintf("%s; held: %q", op, held))
	}
	return out
}

// inLostWrites reports whether the lost-writes report lists op's write:
// a put of op's key whose record carries op's value.
func inLostWrites(op Op, instance string, rep *model.LostWrites) bool {
	kind := store.KindEnrollment
	if op.Kind == history.Register {
		kind = store.KindRegistration
	}
	key := store.Key(instance, kind, op.Key)
	for _, lw := range rep.Writes {
		if lw.Key != key || lw.Deleted {
			continue
		}
		switch op.Kind {
		case history.EnrollmentPut:
			var e model.IndividualEnrollment
			if json.Unmarshal([]byte(lw.Value), &e) == nil && e.DeviceID == op.In {
				return true
			}
		case history.Register:
			var r model.Registration
			if json.Unmarshal([]byte(lw.Value), &r) == nil && history.RegistrationValue(r.Status, r.AssignedHub, r.DeviceID) == op.Out {
				return true
			}
		}
	}
	return false
}

// waitLostWrites waits until region c keeps a lost-writes report of
// instance superseded at newEpoch.
func waitLostWrites(ctx context.Context, c *cluster.Cluster, instance string, newEpoch uint64) (*model.LostWrites, error) {
	var rep *model.LostWrites
	err := waitFor(ctx, 45*time.Second, func(ctx context.Context) error {
		reps, err := c.Control(0).LostWrites(ctx, instance)
		if err != nil {
			return err
		}
		for i := range reps {
			if reps[i].NewEpoch == newEpoch {
				rep = &reps[i]
				return nil
			}
		}
		return fmt.Errorf("%s keeps no lost-writes report of %s at epoch %d (has %d reports)", c.Region(), instance, newEpoch, len(reps))
	})
	return rep, err
}

// leak is one place outside its region where a canary was found.
type leak struct{ where, canary, context string }

func (l leak) String() string { return fmt.Sprintf("%s: %q in %q", l.where, l.canary, l.context) }

// scanEtcd looks for the canaries in every key and value of region c.
func scanEtcd(ctx context.Context, c *cluster.Cluster, canaries []string) (keys int, leaks []leak, err error) {
	cli, err := etcdClient(c)
	if err != nil {
		return 0, nil, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		return 0, nil, err
	}
	for _, kv := range resp.Kvs {
		for _, s := range canaries {
			if strings.Contains(string(kv.Key), s) || strings.Contains(string(kv.Value), s) {
				leaks = append(leaks, leak{where: c.Region() + " etcd key " + string(kv.Key), canary: s, context: excerpt(string(kv.Value), s)})
			}
		}
	}
	return len(resp.Kvs), leaks, nil
}

// scanLogs looks for the canaries in every line node i of region c
// logged (all its runs).
func scanLogs(c *cluster.Cluster, i int, canaries []string) (lines int, leaks []leak, err error) {
	b, err := os.ReadFile(c.LogPath(i))
	if err != nil {
		return 0, nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		lines++
		for _, s := range canaries {
			if strings.Contains(line, s) {
				leaks = append(leaks, leak{where: fmt.Sprintf("%s/%s log", c.Region(), c.Name(i)), canary: s, context: excerpt(line, s)})
			}
		}
	}
	return lines, leaks, nil
}

// scanMetrics looks for the canaries in node i's /metrics.
func scanMetrics(ctx context.Context, c *cluster.Cluster, i int, canaries []string) (series int, leaks []leak, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.ControlURL(i)+"/metrics", nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("GET /metrics: %d", resp.StatusCode)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series++
		for _, s := range canaries {
			if strings.Contains(line, s) {
				leaks = append(leaks, leak{where: fmt.Sprintf("%s/%s /metrics", c.Region(), c.Name(i)), canary: s, context: excerpt(line, s)})
			}
		}
	}
	return series, leaks, nil
}

func excerpt(s, sub string) string {
	i := strings.Index(s, sub)
	if i < 0 {
		return ""
	}
	from, to := max(0, i-80), min(len(s), i+len(sub)+80)
	return s[from:to]
}

// countOK counts the operations and acknowledged writes of ops that keep
// selects.
func countOK(ops []Op, keep func(Op) bool) (n, acked int) {
	for _, op := range ops {
		if keep(op) {
			n++
			if op.Outcome == history.OK && op.Kind.Write() {
				acked++
			}
		}
	}
	return n, acked
}

func loadIs(names ...string) func(Op) bool {
	return func(op Op) bool { return slices.Contains(names, op.Load) }
}

// keysWrittenBefore are the keys of the writes of ops issued before t:
// a later write of the same value (a device registering again) cannot be
// told apart from them in a lost-writes report.
func keysWrittenBefore(ops []Op, t time.Time) map[string]bool {
	out := map[string]bool{}
	for _, op := range ops {
		if op.Kind.Write() && op.Call.Before(t) {
			out[op.Key] = true
		}
	}
	return out
}
