package hubsim

import (
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

// saveLocked writes the state file (if any) atomically. s.mu must be held.
func (s *Sim) saveLocked() error {
	if s.stateFile == "" {
		return nil
	}
	st := stateFile{Version: stateVersion}
	for _, h := range s.hubs {
		hs := hubStore{HubConfig: h.cfg, Seq: h.seq, LastGen: h.lastGen}
		for _, r := range h.devices {
			hs.Devices = append(hs.Devices, r)
		}
		slices.SortFunc(hs.Devices, func(a, b *record) int { return strings.Compare(a.Device.DeviceID, b.Device.DeviceID) })
		st.Hubs = append(st.Hubs, hs)
	}
	slices.SortFunc(st.Hubs, func(a, b hubStore) int { return strings.Compare(a.HostName, b.HostName) })
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := writeFileAtomic(s.stateFile, b); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	return nil
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
