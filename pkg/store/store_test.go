package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap/zaptest"
)

func TestOpen_PersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", FileName)
	s, err := Open(ctx, path, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	id1, err := s.DaemonID(ctx)
	if err != nil || len(id1) != 32 {
		t.Fatalf("daemon id %q, %v", id1, err)
	}
	if n, err := s.Start(ctx, "v1", time.Now()); err != nil || n != 1 {
		t.Fatalf("first start = %d, %v", n, err)
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	s.Close()

	s, err = Open(ctx, path, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id2, _ := s.DaemonID(ctx)
	if id2 != id1 {
		t.Errorf("daemon id changed across reopen: %s -> %s", id1, id2)
	}
	if n, err := s.Start(ctx, "v1", time.Now()); err != nil || n != 2 {
		t.Errorf("second start = %d, %v; want 2", n, err)
	}
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Errorf("schema version %d, want %d", v, len(migrations))
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check on a healthy database: %v", err)
	}
}

// Each migration applies on top of the previous ones and leaves the
// version it claims.
func TestMigrations_Stepwise(t *testing.T) {
	ctx := context.Background()
	for n := 1; n <= len(migrations); n++ {
		t.Run(fmt.Sprintf("to_%d_%s", n, strings.ReplaceAll(migrations[n-1].name, " ", "_")), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			saved := migrations
			migrations = saved[:n]
			s, err := Open(ctx, path, zaptest.NewLogger(t))
			migrations = saved
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if v, _ := s.SchemaVersion(ctx); v != n {
				t.Errorf("version %d, want %d", v, n)
			}
			if err := s.migrate(ctx); err != nil {
				t.Fatalf("migrate from %d: %v", n, err)
			}
			if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
				t.Errorf("after migrate: version %d, want %d", v, len(migrations))
			}
		})
	}
}

func TestOpen_Refuses(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    string
		class   error
	}{
		{"newer schema", func(t *testing.T, path string) {
			s, err := Open(ctx, path, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}, "knows up to", ErrSchemaTooNew},
		{"garbage file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 500), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "unreadable or corrupted", errdefs.ErrDataLoss},
		{"foreign sqlite", func(t *testing.T, path string) {
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("CREATE TABLE x(a); PRAGMA user_version = 3"); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, "not an sglangd database", errdefs.ErrFailedPrecondition},
		{"other application", func(t *testing.T, path string) {
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("PRAGMA application_id = 42; CREATE TABLE y(b)"); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, "belongs to another application", errdefs.ErrFailedPrecondition},
		{"corrupted pages", func(t *testing.T, path string) {
			s, err := Open(ctx, path, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 200 {
				if _, err := s.Start(ctx, strings.Repeat("v", 200), time.Unix(int64(i), 0)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				t.Fatal(err)
			}
			s.Close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Smash the middle of the file, past the header page.
			for i := 4096 + 100; i < len(b)-100 && i < 4096*6; i++ {
				b[i] = 0xA5
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "unreadable or corrupted", errdefs.ErrDataLoss},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			tt.prepare(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(ctx, path, zaptest.NewLogger(t))
			if err == nil {
				s.Close()
				t.Fatal("Open accepted the database")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q lacks %q or the path", err, tt.want)
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("error class: got %v, want %v", err, tt.class)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("refused database file was modified")
			}
		})
	}
}
