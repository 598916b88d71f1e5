package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/raftkv/raftkv/internal/vfs"
)

// FormatVersion is the on-disk format version of a data directory, written
// to its identity file. Open refuses any other version.
//
// Written to disk: bump it on any incompatible format change.
const FormatVersion = 1

// Identity names the member a data directory belongs to.
type Identity struct {
	ClusterID uint64
	MemberID  uint64
}

const (
	identityFile  = "IDENTITY"
	lockFile      = "LOCK"
	identityMagic = "RKVWALID"
	identitySize  = 8 + 4 + 8 + 8 + 4
)

// The identity file (32 bytes, little-endian):
//
//	0        8         12          20         28      32
//	+--------+---------+-----------+----------+-------+
//	| magic  | version | clusterID | memberID | CRC32C|
//	+--------+---------+-----------+----------+-------+
//
// The CRC covers bytes 0..28. Written to disk: never change.
func encodeIdentity(id Identity) []byte {
	b := make([]byte, identitySize)
	copy(b, identityMagic)
	binary.LittleEndian.PutUint32(b[8:12], FormatVersion)
	binary.LittleEndian.PutUint64(b[12:20], id.ClusterID)
	binary.LittleEndian.PutUint64(b[20:28], id.MemberID)
	binary.LittleEndian.PutUint32(b[28:32], crc32.Checksum(b[:28], castagnoli))
	return b
}

func decodeIdentity(b []byte) (Identity, error) {
	if len(b) != identitySize || string(b[:8]) != identityMagic {
		return Identity{}, errors.New("not a raftkv identity file")
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:32]) {
		return Identity{}, errors.New("identity file checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != FormatVersion {
		return Identity{}, fmt.Errorf("format version %d is not supported (this build reads version %d)", v, FormatVersion)
	}
	return Identity{
		ClusterID: binary.LittleEndian.Uint64(b[12:20]),
		MemberID:  binary.LittleEndian.Uint64(b[20:28]),
	}, nil
}

// checkIdentity validates dir's identity file against id, or writes one if
// there is none and hasState is false. A directory with log or snapshot
// files but no identity file is refused: it is not ours to adopt.
func checkIdentity(fs vfs.FS, dir string, id Identity, hasState bool) error {
	path := filepath.Join(dir, identityFile)
	b, err := readSmallFile(fs, path, identitySize)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if hasState {
			return fmt.Errorf("wal: %s holds log or snapshot files but no %s file; refusing to adopt it", dir, identityFile)
		}
		if err := writeFileAtomic(fs, path, encodeIdentity(id)); err != nil {
			return fmt.Errorf("wal: write identity: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("wal: read identity: %w", err)
	}
	got, err := decodeIdentity(b)
	if err != nil {
		return fmt.Errorf("wal: %s: %w: %w", path, ErrCorrupt, err)
	}
	if got != id {
		return fmt.Errorf("%w: %s belongs to cluster %016x member %d, not cluster %016x member %d",
			ErrIdentityMismatch, dir, got.ClusterID, got.MemberID, id.ClusterID, id.MemberID)
	}
	return nil
}

// readSmallFile reads a file expected to hold at most limit bytes; a
// larger file is read only up to limit+1 bytes (enough to know it is wrong).
func readSmallFile(fs vfs.FS, path string, limit int) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// writeFileAtomic writes data to path so that after a crash path holds
// either its old content or all of data: temp file, fsync, rename, fsync
// the directory.
func writeFileAtomic(fs vfs.FS, path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		return err
	}
	return fs.SyncDir(filepath.Dir(path))
}
