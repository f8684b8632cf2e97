package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// migration moves the schema from version N-1 to N (N = index+1). Never
// edit a released migration: append a new one.
type migration struct {
	name string
	up   func(ctx context.Context, tx *sql.Tx) error
}

var migrations = []migration{
	{name: "meta and starts", up: func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE starts (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, version TEXT NOT NULL);`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('daemon_id', ?), ('created_at', ?)`,
			newID(), time.Now().UTC().Format(time.RFC3339))
		return err
	}},
}

// migrate applies every pending migration, each in its own transaction
// together with its user_version bump.
func (s *Store) migrate(ctx context.Context) error {
	current, err := s.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("state database %s: read schema version: %w", s.path, err)
	}
	for v := current; v < len(migrations); v++ {
		m := migrations[v]
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("state database %s: migration %d (%s): %w", s.path, v+1, m.name, err)
		}
		if err := m.up(ctx, tx); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("state database %s: migration %d (%s): %w", s.path, v+1, m.name, err)
		}
		// PRAGMAs cannot take parameters; v is an int from our own table.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d; PRAGMA application_id = %d", v+1, ApplicationID)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("state database %s: migration %d: set version: %w", s.path, v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("state database %s: migration %d (%s): commit: %w", s.path, v+1, m.name, err)
		}
		s.logger.Info("migrated state database", zap.String("path", s.path), zap.Int("version", v+1), zap.String("migration", m.name))
	}
	return nil
}
