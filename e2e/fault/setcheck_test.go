package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/dpstest/history"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// memberState is what one etcd member holds at the end, read
// serializably from that member alone.
type memberState struct {
	enrollments   map[string]string // id -> deviceId
	registrations map[string]string // id -> registrationValue
	revision      int64
	at            time.Duration // when it was read (history offset)
}

// readMembers waits until every member has applied the revision the
// leader reports, then reads the instance's enrollments and registrations
// from each member's own store.
func readMembers(ctx context.Context, c *cluster.Cluster, h *History) ([]memberState, error) {
	l, err := c.WaitLeader(ctx)
	if err != nil {
		return nil, err
	}
	target, err := linearizableRevision(ctx, c, l)
	if err != nil {
		return nil, err
	}
	states := make([]memberState, c.N())
	for i := range c.N() {
		if states[i], err = readMember(ctx, c, i, target, h); err != nil {
			return nil, fmt.Errorf("member %s: %w", c.Name(i), err)
		}
	}
	return states, nil
}

func linearizableRevision(ctx context.Context, c *cluster.Cluster, i int) (int64, error) {
	cli, err := c.MemberClient(i)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "/opendps/", clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

func readMember(ctx context.Context, c *cluster.Cluster, i int, target int64, h *History) (memberState, error) {
	cli, err := c.MemberClient(i)
	if err != nil {
		return memberState{}, err
	}
	defer cli.Close()
	for {
		resp, err := cli.Get(ctx, "/opendps/", clientv3.WithCountOnly(), clientv3.WithSerializable())
		if err == nil && resp.Header.Revision >= target {
			break
		}
		select {
		case <-ctx.Done():
			return memberState{}, fmt.Errorf("did not reach revision %d: %v", target, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	ms := memberState{at: h.Now()}
	if ms.enrollments, ms.revision, err = readKind(ctx, cli, c.Instance(), store.KindEnrollment, func(b []byte) (string, error) {
		var e model.IndividualEnrollment
		err := json.Unmarshal(b, &e)
		return e.DeviceID, err
	}); err != nil {
		return ms, err
	}
	ms.registrations, _, err = readKind(ctx, cli, c.Instance(), store.KindRegistration, func(b []byte) (string, error) {
		var r model.Registration
		err := json.Unmarshal(b, &r)
		return history.RegistrationValue(r.Status, r.AssignedHub, r.DeviceID), err
	})
	return ms, err
}

func readKind(ctx context.Context, cli *clientv3.Client, instance, kind string, value func([]byte) (string, error)) (map[string]string, int64, error) {
	prefix := store.KindPrefix(instance, kind)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, 0, err
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := value(kv.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(string(kv.Key), prefix)] = v
	}
	return out, resp.Header.Revision, nil
}

// finalReads turns the member states into read operations for the
// linearizability check: one per key of the history and member.
func finalReads(ops []Op, states []memberState, h *History) {
	keys := map[string]history.Kind{}
	for _, op := range ops {
		if op.Kind == history.EnrollmentPut || op.Kind == history.EnrollmentGet {
			keys[op.Key] = history.EnrollmentGet
		} else if op.Kind == history.Register || op.Kind == history.RegistrationGet {
			keys[op.Key] = history.RegistrationGet
		}
	}
	for i, ms := range states {
		for k, kind := range keys {
			v := ms.registrations[k]
			if kind == history.EnrollmentGet {
				v = ms.enrollments[k]
			}
			h.Add(Op{Worker: workers*outstanding + i, Kind: history.FinalRead, Key: k, Node: i, Out: v, Outcome: history.OK, Call: ms.at, Return: ms.at})
		}
	}
}

// setCheck verifies that every acknowledged write is present in every
// member: an acknowledged registration with its assignment, and for each
// enrollment a value that no acknowledged write followed. It returns one
// line per lost write or divergence.
func setCheck(ops []Op, states []memberState, name func(int) string) (lost, diverged []string) {
	puts := map[string][]Op{}
	for _, op := range ops {
		switch {
		case op.Kind == history.Register && op.Outcome == history.OK:
			for i, ms := range states {
				if got := ms.registrations[op.Key]; got != op.Out {
					lost = append(lost, fmt.Sprintf("registration %s acknowledged %q by node%d at %v; %s holds %q",
						op.Key, op.Out, op.Node+1, op.Return.Round(time.Millisecond), name(i), got))
				}
			}
		case op.Kind == history.EnrollmentPut && op.Outcome != history.Failed:
			puts[op.Key] = append(puts[op.Key], op)
		}
	}
	for key, ws := range puts {
		for i, ms := range states {
			lost = append(lost, lostEnrollmentWrites(key, ws, ms.enrollments[key], name(i))...)
		}
	}
	for i := 1; i < len(states); i++ {
		diverged = append(diverged, diff(states[0], states[i], name(0), name(i))...)
	}
	sort.Strings(lost)
	return lost, diverged
}

// lostEnrollmentWrites: the final value must come from a put, and no
// acknowledged put may have been issued after that put completed.
func lostEnrollmentWrites(key string, puts []Op, final, member string) []string {
	var src *Op
	for i := range puts {
		if puts[i].In == final {
			src = &puts[i]
		}
	}
	var lost []string
	for _, w := range puts {
		if w.Outcome != history.OK {
			continue
		}
		switch {
		case src == nil:
			lost = append(lost, fmt.Sprintf("enrollment %s: put %q acknowledged by node%d at %v; %s holds %q, written by no put",
				key, w.In, w.Node+1, w.Return.Round(time.Millisecond), member, final))
		case src.Outcome == history.OK && src.Return < w.Call:
			lost = append(lost, fmt.Sprintf("enrollment %s: put %q acknowledged by node%d at %v was overwritten by the older put %q (done at %v) in %s",
				key, w.In, w.Node+1, w.Return.Round(time.Millisecond), src.In, src.Return.Round(time.Millisecond), member))
		}
	}
	return lost
}

func diff(a, b memberState, an, bn string) []string {
	var out []string
	for _, kind := range []struct {
		name string
		a, b map[string]string
	}{{"enrollment", a.enrollments, b.enrollments}, {"registration", a.registrations, b.registrations}} {
		for k, v := range kind.a {
			if kind.b[k] != v {
				out = append(out, fmt.Sprintf("%s %s: %s holds %q, %s holds %q", kind.name, k, an, v, bn, kind.b[k]))
			}
		}
		for k, v := range kind.b {
			if _, ok := kind.a[k]; !ok {
				out = append(out, fmt.Sprintf("%s %s: %s holds nothing, %s holds %q", kind.name, k, an, bn, v))
			}
		}
	}
	sort.Strings(out)
	return out
}
