package pinterest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestFileTokenStoreRoundTripsWithMode0600(t *testing.T) {
	dir := t.TempDir()
	s := NewFileTokenStore(filepath.Join(dir, "token.json"))
	ctx := context.Background()
	if _, err := s.Load(ctx); !errors.Is(err, ErrNoToken) {
		t.Fatalf("Load of a missing file = %v, want ErrNoToken", err)
	}
	want := &oauth2.Token{AccessToken: "pina.a", RefreshToken: "pinr.r", TokenType: "bearer",
		Expiry: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), ExpiresIn: 3600}
	if err := s.Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken ||
		!got.Expiry.Equal(want.Expiry) || got.ExpiresIn != want.ExpiresIn {
		t.Fatalf("Load = %+v, want %+v", got, want)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}
	// A file left world-readable by someone else is tightened by the next Save.
	if err := os.Chmod(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after re-save = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the token (no temporary files left)", len(entries))
	}
}

func TestFileTokenStoreNeverShowsATornFile(t *testing.T) {
	s := NewFileTokenStore(filepath.Join(t.TempDir(), "token.json"))
	ctx := context.Background()
	if err := s.Save(ctx, &oauth2.Token{RefreshToken: "pinr.0"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				// Tokens of varying length make a torn write visible.
				rt := fmt.Sprintf("pinr.%d.%d.%0*d", w, i, (i*97)%4000, 0)
				if err := s.Save(ctx, &oauth2.Token{RefreshToken: rt, AccessToken: "pina"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 200 {
				tok, err := s.Load(ctx)
				if err != nil {
					t.Errorf("Load during Saves: %v", err)
					return
				}
				if tok.RefreshToken == "" {
					t.Error("Load returned a token without refresh token")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestFileTokenStoreSaveFailureKeepsOldToken(t *testing.T) {
	dir := t.TempDir()
	s := NewFileTokenStore(filepath.Join(dir, "token.json"))
	ctx := context.Background()
	if err := s.Save(ctx, &oauth2.Token{RefreshToken: "pinr.old"}); err != nil {
		t.Fatal(err)
	}
	// Saving into a directory that is gone fails without touching the token.
	bad := NewFileTokenStore(filepath.Join(dir, "missing", "token.json"))
	if err := bad.Save(ctx, &oauth2.Token{RefreshToken: "pinr.new"}); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
	if tok, err := s.Load(ctx); err != nil || tok.RefreshToken != "pinr.old" {
		t.Fatalf("Load = %v, %v", tok, err)
	}
}
