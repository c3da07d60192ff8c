package format

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pinsync/pinsync/schemas"
)

// RegistryConfig says how to reach a Confluent-compatible schema registry.
type RegistryConfig struct {
	// URL is the registry's base URL, http or https.
	URL string `yaml:"url"`
	// Username and Password, when set, are sent as HTTP basic auth
	// (Confluent Cloud: an API key and secret).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// BearerToken, when set, is sent as "Authorization: Bearer".
	BearerToken string `yaml:"bearer_token"`
	// Timeout bounds one request for a schema; default DefaultRegistryTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// CacheSize bounds the schemas kept in memory, by id; default
	// DefaultCacheSize.
	CacheSize int `yaml:"cache_size"`
}

// Defaults of RegistryConfig.
const (
	DefaultRegistryTimeout = 5 * time.Second
	DefaultCacheSize       = 1000
)

// maxSchemaResponse bounds the body of a registry answer that is read.
const maxSchemaResponse = 4 << 20

// maxReferences bounds the schemas one schema may reference, transitively.
const maxReferences = 64

// Validate reports the first setting of c that is not usable; the error
// names it by its configuration key.
func (c RegistryConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("url: required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("url: %q is not an http(s) URL", c.URL)
	case u.User != nil:
		return errors.New("url: credentials go in username and password, not in the URL")
	case c.Password != "" && c.Username == "":
		return errors.New("username: required with password")
	case c.BearerToken != "" && c.Username != "":
		return errors.New("bearer_token: not with username and password")
	case c.Timeout < 0:
		return errors.New("timeout: must not be negative")
	case c.CacheSize < 0:
		return errors.New("cache_size: must not be negative")
	}
	return nil
}

// LogValue shows the settings without the password and the token.
func (c RegistryConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", c.URL), slog.String("username", c.Username),
		slog.Bool("password_set", c.Password != ""), slog.Bool("bearer_token_set", c.BearerToken != ""),
		slog.Duration("timeout", c.Timeout), slog.Int("cache_size", c.CacheSize),
	)
}

// Registry fetches schemas by id from a schema registry and keeps them,
// parsed, in a bounded cache. One Registry may serve the decoders of
// several topics; it is safe for concurrent use. A schema is fetched once
// however many records ask for it at the same time. A registry's answer
// that it has no such schema is kept as well (schema ids are never reused);
// a failure to get an answer is not.
type Registry struct {
	cl      *sr.Client
	timeout time.Duration
	max     int

	mu      sync.Mutex
	schemas map[int]*entry
}

// entry is one schema id in the cache. done is closed once s or err is set.
type entry struct {
	done chan struct{}
	s    *schema
	err  error
}

// schema is a registry schema, parsed for its type.
type schema struct {
	typ   sr.SchemaType
	avro  avro.Schema // TypeAvro
	proto linker.File // TypeProtobuf
}

// NewRegistry returns a Registry for c. It does not connect.
func NewRegistry(c RegistryConfig) (*Registry, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("schema_registry.%w", err)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultRegistryTimeout
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	opts := []sr.ClientOpt{
		sr.URLs(c.URL),
		sr.UserAgent("pinsync"),
		sr.HTTPClient(&http.Client{Timeout: c.Timeout, Transport: cappedTransport{http.DefaultTransport}}),
	}
	if c.Username != "" {
		opts = append(opts, sr.BasicAuth(c.Username, c.Password))
	}
	if c.BearerToken != "" {
		opts = append(opts, sr.BearerToken(c.BearerToken))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema_registry: %w", err)
	}
	return &Registry{cl: cl, timeout: c.Timeout, max: c.CacheSize, schemas: make(map[int]*entry)}, nil
}

// cappedTransport bounds the bodies the registry client reads: it reads
// them whole.
type cappedTransport struct{ http.RoundTripper }

func (t cappedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(req)
	if err == nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, maxSchemaResponse), resp.Body}
	}
	return resp, err
}

// schema returns the schema of id, from the cache or the registry. The
// error is a *schemas.DecodeError (unknown_schema, schema_mismatch) or a
// *RegistryUnavailableError.
func (r *Registry) schema(ctx context.Context, id int) (*schema, error) {
	r.mu.Lock()
	e, ok := r.schemas[id]
	if !ok {
		e = &entry{done: make(chan struct{})}
		r.evictLocked()
		r.schemas[id] = e
	}
	r.mu.Unlock()
	if ok {
		select {
		case <-e.done:
			return e.s, e.err
		case <-ctx.Done():
			return nil, &RegistryUnavailableError{SchemaID: id, Err: ctx.Err()}
		}
	}
	e.s, e.err = r.fetch(ctx, id)
	if errors.Is(e.err, ErrRegistryUnavailable) {
		r.mu.Lock()
		delete(r.schemas, id) // the next record asks again
		r.mu.Unlock()
	}
	close(e.done)
	return e.s, e.err
}

// evictLocked makes room for one entry, dropping a settled one.
func (r *Registry) evictLocked() {
	if len(r.schemas) < r.max {
		return
	}
	for id, e := range r.schemas {
		select {
		case <-e.done:
			delete(r.schemas, id)
			return
		default:
		}
	}
}

func (r *Registry) fetch(ctx context.Context, id int) (*schema, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	s, err := r.cl.SchemaByID(ctx, id)
	if err != nil {
		return nil, classify(id, err, schemas.ReasonUnknownSchema)
	}
	refs, err := r.references(ctx, id, s.References)
	if err != nil {
		return nil, err
	}
	return parse(ctx, s, refs)
}

// reference is a schema another one references, by the name it uses.
type reference struct {
	name string
	sr.Schema
}

// references fetches the schemas refs name, transitively, dependencies
// first.
func (r *Registry) references(ctx context.Context, id int, refs []sr.SchemaReference) ([]reference, error) {
	var out []reference
	seen := map[string]bool{}
	var walk func(refs []sr.SchemaReference) error
	walk = func(refs []sr.SchemaReference) error {
		for _, ref := range refs {
			if seen[ref.Name] {
				continue
			}
			seen[ref.Name] = true
			if len(seen) > maxReferences {
				return &schemas.DecodeError{Reason: schemas.ReasonSchemaMismatch}
			}
			s, err := r.cl.SchemaByVersion(ctx, ref.Subject, ref.Version)
			if err != nil {
				return classify(id, err, schemas.ReasonSchemaMismatch)
			}
			if err := walk(s.References); err != nil {
				return err
			}
			out = append(out, reference{name: ref.Name, Schema: s.Schema})
		}
		return nil
	}
	return out, walk(refs)
}

// classify turns an error of the registry client into the registry's
// answer that the schema does not exist (a *schemas.DecodeError of
// reason) or a *RegistryUnavailableError. Only the registry's own error
// codes for a missing schema, subject or version say that the record is at
// fault; a bare 404 (a proxy, a wrong base URL) does not.
func classify(id int, err error, reason string) error {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return &RegistryUnavailableError{SchemaID: id, Err: err}
	}
	switch re.ErrorCode {
	case sr.ErrSchemaNotFound.Code, sr.ErrSubjectNotFound.Code, sr.ErrVersionNotFound.Code:
		if re.StatusCode == http.StatusNotFound {
			return &schemas.DecodeError{Reason: reason}
		}
	}
	return &RegistryUnavailableError{SchemaID: id, Status: re.StatusCode, Err: err}
}

// parse parses s for its type. A schema that does not parse is a
// schema_mismatch: no record of it can be read.
func parse(ctx context.Context, s sr.Schema, refs []reference) (*schema, error) {
	mismatch := &schemas.DecodeError{Reason: schemas.ReasonSchemaMismatch}
	out := &schema{typ: s.Type}
	switch s.Type {
	case sr.TypeAvro:
		cache := &avro.SchemaCache{} // names of this schema only
		for _, ref := range refs {
			if _, err := avro.ParseWithCache(ref.Schema.Schema, "", cache); err != nil {
				return nil, mismatch
			}
		}
		a, err := avro.ParseWithCache(s.Schema, "", cache)
		if err != nil {
			return nil, mismatch
		}
		out.avro = a
	case sr.TypeProtobuf:
		const main = "pinsync-registry-schema.proto"
		files := map[string]string{main: s.Schema}
		for _, ref := range refs {
			files[ref.name] = ref.Schema.Schema
		}
		c := protocompile.Compiler{
			Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
				Accessor: protocompile.SourceAccessorFromMap(files),
			}),
		}
		fds, err := c.Compile(ctx, main)
		if err != nil {
			return nil, mismatch
		}
		out.proto = fds[0]
	}
	return out, nil
}
