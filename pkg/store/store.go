// Package store owns sglangd's state: one SQLite database (pure Go,
// modernc.org/sqlite) in WAL mode under the data directory. All SQL lives
// here; callers get plain structs.
//
// Schema (version 1):
//
//	meta(key TEXT PRIMARY KEY, value TEXT)   daemon_id, created_at
//	starts(id INTEGER PRIMARY KEY, started_at TEXT, version TEXT)
//
// The schema version is PRAGMA user_version and the file is marked with
// PRAGMA application_id, so a database written by a newer sglangd, a
// corrupted file or somebody else's SQLite file is refused with a clear
// message and never overwritten.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ApplicationID marks a SQLite file as sglangd's ("SGLD").
const ApplicationID = 0x53474c44

// FileName is the database's name inside the data directory.
const FileName = "sglangd.db"

// Store is an open state database. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	path   string
	logger *zap.Logger
}

// ErrSchemaTooNew is returned for a database written by a newer sglangd.
var ErrSchemaTooNew = errors.New("database schema is newer than this sglangd")

// Open opens (creating if absent) the database at path and migrates it to
// the current schema. It refuses corrupted, foreign and newer databases.
func Open(ctx context.Context, path string, logger *zap.Logger) (*Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", filepath.Dir(path), err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	s := &Store{db: db, path: path, logger: logger.Named("store")}
	if err := s.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// check refuses files that are not healthy sglangd databases before any
// write happens (journal_mode=WAL is itself a write).
func (s *Store) check(ctx context.Context) error {
	var appID, version int64
	if err := s.db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return s.corrupt(err)
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return s.corrupt(err)
	}
	if appID != 0 && appID != ApplicationID {
		return fmt.Errorf("state database %s belongs to another application (application_id %#x): %w; point data_dir elsewhere",
			s.path, appID, errdefs.ErrFailedPrecondition)
	}
	if appID == 0 && version != 0 {
		return fmt.Errorf("state database %s is not an sglangd database (user_version %d, no sglangd mark): %w; point data_dir elsewhere",
			s.path, version, errdefs.ErrFailedPrecondition)
	}
	if latest := int64(len(migrations)); version > latest {
		return fmt.Errorf("state database %s has schema version %d but this sglangd knows up to %d: %w; upgrade sglangd (the file was left untouched)",
			s.path, version, latest, ErrSchemaTooNew)
	}
	var res string
	if err := s.db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
		return s.corrupt(err)
	}
	if res != "ok" {
		return s.corrupt(errors.New(res))
	}
	if _, err := s.db.ExecContext(ctx, "PRAGMA journal_mode=WAL"); err != nil {
		return fmt.Errorf("state database %s: enable WAL: %w", s.path, err)
	}
	return nil
}

func (s *Store) corrupt(err error) error {
	return fmt.Errorf("state database %s is unreadable or corrupted (%v): %w; the file was left untouched: restore it from a backup or move it away to start fresh",
		s.path, err, errdefs.ErrDataLoss)
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// SchemaVersion returns the database's schema version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// Check runs SQLite's quick integrity check, for the doctor.
func (s *Store) Check(ctx context.Context) error {
	var res string
	if err := s.db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
		return fmt.Errorf("state database %s: %w", s.path, err)
	}
	if res != "ok" {
		return fmt.Errorf("state database %s: integrity check: %s: %w", s.path, res, errdefs.ErrDataLoss)
	}
	return nil
}

// DaemonID returns the identity created with the database.
func (s *Store) DaemonID(ctx context.Context) (string, error) {
	var id string
	err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'daemon_id'").Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("daemon_id: %w", errdefs.ErrNotFound)
	}
	return id, err
}

// Start records one daemon start and returns how many there have been.
func (s *Store) Start(ctx context.Context, version string, at time.Time) (int64, error) {
	if _, err := s.db.ExecContext(ctx, "INSERT INTO starts(started_at, version) VALUES (?, ?)",
		at.UTC().Format(time.RFC3339Nano), version); err != nil {
		return 0, fmt.Errorf("record start: %w", err)
	}
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM starts").Scan(&n)
	return n, err
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
