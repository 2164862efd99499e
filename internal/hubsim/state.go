package hubsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// stateVersion is the format version of the state file.
const stateVersion = 1

// stateFile is the JSON form of a Sim's state. It holds the hubs' keys:
// it is written with mode 0600.
type stateFile struct {
	Version int        `json:"version"`
	Hubs    []hubStore `json:"hubs"`
}

type hubStore struct {
	HubConfig
	Seq     uint64    `json:"seq"`
	LastGen int64     `json:"lastGenerationId"`
	Devices []*record `json:"devices"`
}

// load restores s.stateFile if set and present.
func (s *Sim) load() error {
	if s.stateFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrState, s.stateFile, err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("%w: %s: version %d, want %d", ErrState, s.stateFile, st.Version, stateVersion)
	}
	for _, hs := range st.Hubs {
		if err := hs.HubConfig.Validate(); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrState, s.stateFile, err)
		}
		s.hubs[normHost(hs.HostName)] = hs.restore()
	}
	return nil
}

func (hs hubStore) restore() *hubState {
	h := &hubState{cfg: hs.HubConfig, seq: hs.Seq, lastGen: hs.LastGen, devices: map[string]*record{}}
	h.cfg.KeyName = h.cfg.keyName()
	for _, r := range hs.Devices {
		if r != nil && r.Device.DeviceID != "" {
			h.devices[r.Device.DeviceID] = r
		}
	}
	return h
}

// savedState is the state file as written: records already encoded, so
// that encoding them again is not needed at each save.
type savedState struct {
	Version int             `json:"version"`
	Hubs    []savedHubStore `json:"hubs"`
}

type savedHubStore struct {
	HubConfig
	Seq     uint64            `json:"seq"`
	LastGen int64             `json:"lastGenerationId"`
	Devices []json.RawMessage `json:"devices"`
}

// snapshotLocked captures the state to save. Only records changed since
// the last save are encoded; the others reuse their bytes. s.mu must be held.
func (s *Sim) snapshotLocked() *savedState {
	st := &savedState{Version: stateVersion}
	for _, h := range s.hubs {
		hs := savedHubStore{HubConfig: h.cfg, Seq: h.seq, LastGen: h.lastGen, Devices: make([]json.RawMessage, 0, len(h.devices))}
		for _, r := range h.devices {
			if r.raw == nil {
				r.raw, _ = json.Marshal(r)
			}
			hs.Devices = append(hs.Devices, r.raw)
		}
		st.Hubs = append(st.Hubs, hs)
	}
	slices.SortFunc(st.Hubs, func(a, b savedHubStore) int { return strings.Compare(a.HostName, b.HostName) })
	return st
}

// writeState writes a snapshot to the state file atomically (no lock
// needed: the snapshot is not shared).
func (s *Sim) writeState(st *savedState) error {
	if s.stateFile == "" {
		return nil
	}
	b, err := st.encode()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := writeFileAtomic(s.stateFile, b); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	return nil
}

// encode renders the state as JSON by concatenating the records' bytes
// (json.Marshal would validate and re-compact megabytes of them).
func (st *savedState) encode() ([]byte, error) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"version":%d,"hubs":[`, st.Version)
	for i, h := range st.Hubs {
		head, err := json.Marshal(struct {
			HubConfig
			Seq     uint64 `json:"seq"`
			LastGen int64  `json:"lastGenerationId"`
		}{h.HubConfig, h.Seq, h.LastGen})
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(head[:len(head)-1]) // without the closing brace
		buf.WriteString(`,"devices":[`)
		for j, d := range h.Devices {
			if j > 0 {
				buf.WriteByte(',')
			}
			buf.Write(d)
		}
		buf.WriteString("]}")
	}
	buf.WriteString("]}\n")
	return buf.Bytes(), nil
}

// saveLocked writes the state file (if any). s.mu must be held.
func (s *Sim) saveLocked() error {
	if s.stateFile == "" {
		return nil
	}
	return s.writeState(s.snapshotLocked())
}

// writeFileAtomic replaces path with data through a rename. It does not
// fsync: the file must survive a process restart, not a power loss.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
