// Package replicate streams the DR-enabled instances of a region to their
// secondary region over the peer link (docs/dr-design.md, "Replication").
//
// The Source runs on every node; one of them per region is elected
// (store.ElectionPrefix("replicator")) and runs one stream per instance
// whose directory entry here says DREnabled, Primary == this region and
// role primary or fenced. A stream does a handshake (hello), a base copy of
// the instance at one source revision R when the destination has nothing
// usable, then ships the changes from R+1 in batches that never split a
// source revision, one batch in flight at a time.
//
// The Sink serves the destination side on the peer listener: it accepts a
// batch only from the region that the batch's directory entry names as
// primary, only while the local entry is secondary at that epoch (or absent,
// or older, for a base copy), and applies it in one etcd transaction that
// also moves the destination's model.ReplState. Nothing else can write into
// a secondary.
//
// A residency instance (DREnabled=false) is never read by the Source: only
// its directory entry is, to learn that it is not to be streamed.
//
// StartGate keeps writes of DR-enabled primary instances closed on a
// starting node until the replicator has confirmed contact with the
// secondary region (or a grace period passed), so that a region coming back
// after a failover learns its demotion before it accepts a write.
package replicate

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
)

// Errors of the package.
var (
	// ErrRefused is a batch or hello the destination refused (409): the
	// stream starts over with a handshake.
	ErrRefused = errors.New("replicate: refused by the destination")
	// errSuperseded: the destination holds a newer epoch; this region was
	// demoted and the stream ends.
	errSuperseded = errors.New("replicate: superseded by a newer epoch")
	// errDeleted: the instance was deleted and the deletion replicated.
	errDeleted = errors.New("replicate: instance deleted")
	// errRebase: the stream must start over with a fresh base copy.
	errRebase = errors.New("replicate: a fresh base copy is needed")
)

// Demoter demotes an instance that this region held as primary (or fenced)
// once a newer epoch is known elsewhere: it records the lost writes (the
// changes after ackedRev) and sets the local directory entry to newDir with
// role secondary. newDir is the new primary's entry (Primary, Secondary,
// Epoch as the new primary holds them). ackedRev is the last revision of
// this region that the new primary had applied at the old epoch (0: none
// known). It is implemented by internal/dr; it may be called concurrently
// for different instances and must be idempotent.
type Demoter interface {
	Demote(ctx context.Context, instance string, newDir model.DirEntry, ackedRev int64) error
}

// Batch kinds.
const (
	KindCopy    = "copy"    // part of a base copy at BaseRev
	KindChanges = "changes" // source revisions FromRev+1 .. ToRev
)

// Hello is the body of POST repl/{instance}/hello.
type Hello struct {
	// Source is the calling region; it must be Dir.Primary.
	Source string         `json:"source"`
	Epoch  uint64         `json:"epoch"`
	Dir    model.DirEntry `json:"dir"`
	// State is the caller's own ReplState of the instance, if any: what it
	// received as a secondary before it was promoted. A destination that
	// was failed over reads from it how far its writes had reached.
	State *model.ReplState `json:"state,omitempty"`
}

// HelloAnswer is the destination's answer to a Hello.
type HelloAnswer struct {
	Region string           `json:"region"`
	Dir    *model.DirEntry  `json:"dir,omitempty"`   // nil: no entry
	State  *model.ReplState `json:"state,omitempty"` // nil: none
	// Token is the destination's etcd mod revision of its ReplState (0:
	// none): the next batch must carry it, so that a late or replayed
	// batch can never apply.
	Token int64 `json:"token"`
}

// Op is one change: a put of Value at Key, or a deletion. A deletion of
// the instance's directory key stands for the deletion of the instance
// (entry, ID-scope key, prefix).
type Op struct {
	Rev    int64  `json:"rev,omitempty"` // source revision (changes)
	Key    string `json:"key"`
	Value  []byte `json:"value,omitempty"`
	Delete bool   `json:"delete,omitempty"`
}

// Batch is the body of POST repl/{instance}/apply.
type Batch struct {
	Source string         `json:"source"`
	Epoch  uint64         `json:"epoch"`
	Dir    model.DirEntry `json:"dir"`
	Token  int64          `json:"token"`
	Kind   string         `json:"kind"`
	// Reset (copy): delete the destination's copy first. Final (copy): the
	// last batch of the base copy.
	Reset   bool  `json:"reset,omitempty"`
	Final   bool  `json:"final,omitempty"`
	BaseRev int64 `json:"baseRev,omitempty"`
	// FromRev and ToRev (changes): the destination must be at FromRev and
	// is at ToRev after the batch.
	FromRev    int64     `json:"fromRev,omitempty"`
	ToRev      int64     `json:"toRev,omitempty"`
	SourceTime time.Time `json:"sourceTime"`
	Ops        []Op      `json:"ops"`
}

// ApplyAnswer is the destination's answer to an applied batch.
type ApplyAnswer struct {
	State model.ReplState `json:"state"`
	Token int64           `json:"token"`
}

// Paths of the sink on the peer listener.
const (
	PatternHello = "POST " + peer.PathPrefix + "repl/{instance}/hello"
	PatternApply = "POST " + peer.PathPrefix + "repl/{instance}/apply"
)

func helloPath(instance string) string {
	return peer.PathPrefix + "repl/" + url.PathEscape(instance) + "/hello"
}

func applyPath(instance string) string {
	return peer.PathPrefix + "repl/" + url.PathEscape(instance) + "/apply"
}

// streamDir is d as a stream carries it: the role is the source's own
// business (the destination stores secondary), so it is left out of
// comparisons.
func streamDir(d model.DirEntry) model.DirEntry {
	d.Role = ""
	return d
}
