package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/replica"
	"github.com/raftkv/raftkv/wal"
)

// storedClusterID reads the cluster id from dir's identity file, if the
// directory has one: a restarted member keeps the cluster it was created in,
// whatever --initial-cluster says now. The layout is wal's (identity.go):
// magic "RKVWALID", version (4 bytes), cluster id (8, little-endian), member
// id (8), CRC; wal.Open verifies all of it afterwards.
func storedClusterID(dir string) (uint64, bool, error) {
	f, err := os.Open(filepath.Join(dir, "IDENTITY"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("%w: --data-dir %s: %w", ErrInvalidDataDir, dir, err)
	}
	defer f.Close()
	b := make([]byte, 32)
	if _, err := io.ReadFull(f, b); err != nil || string(b[:8]) != "RKVWALID" {
		return 0, false, fmt.Errorf("%w: --data-dir %s: IDENTITY file is not a raftkv identity file", ErrInvalidDataDir, dir)
	}
	return binary.LittleEndian.Uint64(b[12:20]), true, nil
}

// openStorage opens the WAL in cfg.DataDir. wantCluster is the cluster id
// for a new data dir; an existing one keeps its own. fresh reports whether
// the data dir held no state (so the member must bootstrap or join).
func openStorage(cfg Config, wantCluster uint64) (s storageCloser, clusterID uint64, fresh bool, err error) {
	clusterID = wantCluster
	if stored, ok, err := storedClusterID(cfg.DataDir); err != nil {
		return nil, 0, false, err
	} else if ok {
		if wantCluster != 0 && stored != wantCluster {
			cfg.Logger.Warn("data dir has state: --initial-cluster is ignored on restart",
				"data_dir", cfg.DataDir, "stored_cluster_id", fmt.Sprintf("%016x", stored))
		}
		clusterID = stored
	}
	l, err := wal.Open(cfg.DataDir, wal.Identity{ClusterID: clusterID, MemberID: uint64(cfg.ID)}, wal.Options{Logger: cfg.Logger})
	if err != nil {
		if errors.Is(err, wal.ErrIdentityMismatch) || errors.Is(err, wal.ErrLocked) || errors.Is(err, os.ErrPermission) {
			return nil, 0, false, fmt.Errorf("%w: --data-dir %s: %w", ErrInvalidDataDir, cfg.DataDir, err)
		}
		return nil, 0, false, fmt.Errorf("server: open --data-dir %s: %w", cfg.DataDir, err)
	}
	var sc storageCloser = walStorage{l}
	if cfg.NoSync {
		sc = noSyncStorage{sc}
	}
	return sc, clusterID, l.IsNew(), nil
}

// walStorage adapts *wal.Log to replica.Storage: wal returns its concrete
// snapshot writer, replica wants the interface.
type walStorage struct{ *wal.Log }

func (w walStorage) CreateSnapshot(meta pb.SnapshotMeta) (replica.SnapshotWriter, error) {
	sw, err := w.Log.CreateSnapshot(meta)
	if err != nil {
		return nil, err
	}
	return sw, nil
}

// noSyncStorage drops the fsync request of every Save (Config.NoSync).
type noSyncStorage struct{ storageCloser }

func (s noSyncStorage) Save(hs pb.HardState, ents []pb.Entry, _ bool) error {
	return s.storageCloser.Save(hs, ents, false)
}

// peerTLS builds the mutual-TLS configuration of peer traffic, or nil.
func (m *Member) peerTLS() (*tls.Config, error) {
	if m.cfg.PeerCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(m.cfg.PeerCertFile, m.cfg.PeerKeyFile)
	if err != nil {
		return nil, fmt.Errorf("server: --peer-cert/--peer-key: %w", err)
	}
	caPEM, err := os.ReadFile(m.cfg.PeerCAFile)
	if err != nil {
		return nil, fmt.Errorf("server: --peer-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("server: --peer-ca %s: no PEM certificate found", m.cfg.PeerCAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func pid() int { return os.Getpid() }
