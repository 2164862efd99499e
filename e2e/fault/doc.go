// Package fault is the fault-injection suite of availability zones
// (issue 5): a three-zone region of `opendps serve` processes
// (dpstest/cluster) under a continuous workload of registrations and
// enrollment writes and reads spread over every node, while one zone at a
// time is killed (leader, follower), frozen, cut off from its peers and
// restarted.
//
// Every operation is recorded with its invoke and complete times and its
// outcome (ok, failed, unknown). At the end the suite checks that
//
//   - the history is linearizable (porcupine; one register per enrollment
//     and per device registration, checked key by key);
//   - every acknowledged write is present in every etcd member
//     (serializable reads against each member);
//
// and reports, per fault, the write pause (fault to the first
// acknowledged write issued after it) and the throughput while degraded
// against the healthy rate just before.
//
//	go test ./e2e/fault/                         # CI: 20 seeds, 1 fault each (each fault 4 times)
//	OPENDPS_FAULT_SEEDS=200 go test -timeout 3h ./e2e/fault/  # the long run: 200 seeds
//	OPENDPS_FAULT_SEEDS=40 OPENDPS_FAULT_EPISODES=5 go test -timeout 2h ./e2e/fault/  # 200 episodes, 5 per cluster
//	OPENDPS_FAULT_SEED=7 go test -run TestZoneFaults ./e2e/fault/  # one seed
//
// See docs/reliability.md for the method, the figures and the track
// record of bugs found.
package fault
