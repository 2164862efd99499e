package store

import "strconv"

// Keys of disaster recovery (docs/dr-design.md). They live outside the
// instance prefixes: replication of an instance never carries them.
const (
	replPrefix       = rootPrefix + "repl/"
	replStatusPrefix = rootPrefix + "replstatus/"
	lostPrefix       = rootPrefix + "lost/"
	peerPrefix       = rootPrefix + "peer/"
	electPrefix      = rootPrefix + "elect/"
)

// ReplStateKey is where a destination keeps model.ReplState of instance.
func ReplStateKey(instance string) string { return replPrefix + instance }

// ReplStatePrefix is the prefix of every ReplState of the region.
func ReplStatePrefix() string { return replPrefix }

// ReplStatusKey is where a source keeps model.ReplStatus of instance.
func ReplStatusKey(instance string) string { return replStatusPrefix + instance }

// ReplStatusPrefix is the prefix of every ReplStatus of the region.
func ReplStatusPrefix() string { return replStatusPrefix }

// LostWritesKey is where an old primary keeps model.LostWrites of
// instance, superseded at newEpoch.
func LostWritesKey(instance string, newEpoch uint64) string {
	return lostPrefix + instance + "/" + strconv.FormatUint(newEpoch, 10)
}

// LostWritesPrefix is the prefix of every lost-writes report of the region.
func LostWritesPrefix() string { return lostPrefix }

// PeerContactKey records, for a peer region, when the replicator last
// completed a handshake with it (JSON time): nodes open writes of
// DR-enabled instances after a start only once it is newer than their start.
func PeerContactKey(peer string) string { return peerPrefix + peer + "/contact" }

// ElectionPrefix is the prefix of the region's leader elections (name:
// "replicator", ...).
func ElectionPrefix(name string) string { return electPrefix + name }

// DirPrefix is the prefix of every directory entry.
func DirPrefix() string { return dirPrefix }
