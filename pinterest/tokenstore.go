package pinterest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/oauth2"
)

// TokenStore persists the OAuth token. Pinterest rotates the refresh token on
// every refresh and invalidates the old one, so Save must be durable before
// it returns: the client saves a new token before it uses it.
//
// Implementations must be safe for concurrent use. Load returns ErrNoToken
// (possibly wrapped) when nothing has been saved yet.
type TokenStore interface {
	Load(ctx context.Context) (*oauth2.Token, error)
	Save(ctx context.Context, tok *oauth2.Token) error
}

// RefreshLocker is implemented by a TokenStore shared by several processes
// (control.TokenStore, in the control topic): the client holds the lock from
// before it loads the stored token until the rotated one is saved, so that
// only one process refreshes at a time and none uses a refresh token that
// another has rotated away. LockRefresh waits for the lock; the returned
// func releases it.
type RefreshLocker interface {
	LockRefresh(ctx context.Context) (unlock func(), err error)
}

// FileTokenStore keeps the token as JSON in one file, readable only by its
// owner (mode 0600). Save writes a temporary file in the same directory,
// syncs it and renames it over the old one, so a crash leaves either the
// old token or the new one, never a torn file.
type FileTokenStore struct {
	path string
	mu   sync.Mutex // serialises Saves within the process
}

// NewFileTokenStore returns a store backed by the file at path. The file
// need not exist yet; its directory must.
func NewFileTokenStore(path string) *FileTokenStore { return &FileTokenStore{path: path} }

// Path returns the file the store reads and writes.
func (s *FileTokenStore) Path() string { return s.path }

// Load reads the token. It returns ErrNoToken if the file does not exist.
func (s *FileTokenStore) Load(_ context.Context) (*oauth2.Token, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoToken, s.path)
	}
	if err != nil {
		return nil, fmt.Errorf("pinterest: read token: %w", err)
	}
	tok := new(oauth2.Token)
	if err := json.Unmarshal(b, tok); err != nil {
		// The error from encoding/json quotes no content, only offsets.
		return nil, fmt.Errorf("pinterest: token file %s is not valid JSON: %w", s.path, err)
	}
	if tok.RefreshToken == "" && tok.AccessToken == "" {
		return nil, fmt.Errorf("%w in %s (file holds no token)", ErrNoToken, s.path)
	}
	return tok, nil
}

// Save replaces the stored token atomically.
func (s *FileTokenStore) Save(_ context.Context, tok *oauth2.Token) error {
	if tok == nil {
		return errors.New("pinterest: save nil token")
	}
	b, err := json.Marshal(tok)
	if err != nil {
		return fmt.Errorf("pinterest: encode token: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pinterest: save token: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp already uses 0600; Chmod makes it explicit and survives
	// any umask surprise.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("pinterest: save token: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("pinterest: save token: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("pinterest: save token: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pinterest: save token: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("pinterest: save token: %w", err)
	}
	ok = true
	// Make the rename itself durable. Not all platforms can sync a
	// directory; the rename has happened either way.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
