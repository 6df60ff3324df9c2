package objstore

import (
	"context"
	"io"
)

// Faulty wraps a Store for fault tests. Each hook, when set, runs before the
// request; a non-nil error it returns is what the caller gets, and the inner
// store is not called. Hooks may also block (a slow store) or count calls.
type Faulty struct {
	Store
	BeforePut    func(ctx context.Context, key string) error
	BeforeGet    func(ctx context.Context, key string) error
	BeforeHead   func(ctx context.Context, key string) error
	BeforeDelete func(ctx context.Context, key string) error
	BeforeCopy   func(ctx context.Context, key string) error
	BeforeList   func(ctx context.Context, prefix string) error
	// Body, when set, replaces each GET's body: one that ends early, or
	// arrives slowly. size is the length the response declares.
	Body func(key string, body io.ReadCloser, size int64) io.ReadCloser
	// Announce, when set, may change what a GET's response says of the
	// object and its body (a store or proxy that announces wrongly).
	Announce func(key string, b *Body)
}

func run(hook func(context.Context, string) error, ctx context.Context, key string) error {
	if hook == nil {
		return nil
	}
	return hook(ctx, key)
}

// Put implements Store.
func (f *Faulty) Put(ctx context.Context, key string, body io.ReaderAt, size int64, meta map[string]string) error {
	if err := run(f.BeforePut, ctx, key); err != nil {
		return err
	}
	return f.Store.Put(ctx, key, body, size, meta)
}

// Copy implements Store; BeforeCopy runs with the destination key.
func (f *Faulty) Copy(ctx context.Context, from, to string, meta map[string]string) error {
	if err := run(f.BeforeCopy, ctx, to); err != nil {
		return err
	}
	return f.Store.Copy(ctx, from, to, meta)
}

// Get implements Store.
func (f *Faulty) Get(ctx context.Context, key string, off, n int64) (Body, error) {
	if err := run(f.BeforeGet, ctx, key); err != nil {
		return Body{}, err
	}
	body, err := f.Store.Get(ctx, key, off, n)
	if err == nil && f.Body != nil {
		body.ReadCloser = f.Body(key, body.ReadCloser, body.Len)
	}
	if err == nil && f.Announce != nil {
		f.Announce(key, &body)
	}
	return body, err
}

// HoldBack is body giving its first n bytes at once and the rest only
// once release is closed, like an object still on its way.
func HoldBack(body io.ReadCloser, n int64, release <-chan struct{}) io.ReadCloser {
	return heldBack{io.MultiReader(io.LimitReader(body, n), gate{release, body}), body}
}

type heldBack struct {
	io.Reader
	io.Closer
}

type gate struct {
	release <-chan struct{}
	r       io.Reader
}

func (g gate) Read(b []byte) (int, error) {
	<-g.release
	return g.r.Read(b)
}

// Head implements Store.
func (f *Faulty) Head(ctx context.Context, key string) (Object, error) {
	if err := run(f.BeforeHead, ctx, key); err != nil {
		return Object{}, err
	}
	return f.Store.Head(ctx, key)
}

// Lookup implements Store; it is a LIST request, so BeforeList runs.
func (f *Faulty) Lookup(ctx context.Context, key string, below func(Entry)) (Found, error) {
	if err := run(f.BeforeList, ctx, key); err != nil {
		return Found{}, err
	}
	return f.Store.Lookup(ctx, key, below)
}

// Delete implements Store.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	if err := run(f.BeforeDelete, ctx, key); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

// DeleteMany implements BatchDeleter when the inner store does (and says
// it does not otherwise): BeforeDelete runs for each key, and a key whose
// hook fails is reported failed, the others deleted in one request.
func (f *Faulty) DeleteMany(ctx context.Context, keys []string) (map[string]error, error) {
	bd, err := BatchDeleterOf(f.Store)
	if err != nil {
		return nil, err
	}
	failed := map[string]error{}
	rest := make([]string, 0, len(keys))
	for _, k := range keys {
		if err := run(f.BeforeDelete, ctx, k); err != nil {
			failed[k] = err
		} else {
			rest = append(rest, k)
		}
	}
	more, err := bd.DeleteMany(ctx, rest)
	if err != nil {
		return nil, err
	}
	for k, e := range more {
		failed[k] = e
	}
	return failed, nil
}

// List implements Store.
func (f *Faulty) List(ctx context.Context, prefix string, recursive bool, fn func(Entry) bool) error {
	if err := run(f.BeforeList, ctx, prefix); err != nil {
		return err
	}
	return f.Store.List(ctx, prefix, recursive, fn)
}

// Unavailable is a transient error for fault hooks: the store answered 503.
func Unavailable(op, key string) error {
	return &Error{Op: op, Key: key, Status: 503, Code: "ServiceUnavailable", Err: errUnavailable}
}

// Denied is a permanent error for fault hooks: the store answered 403.
func Denied(op, key string) error {
	return &Error{Op: op, Key: key, Status: 403, Code: "AccessDenied", Err: errDenied, Perm: true}
}

type constError string

func (e constError) Error() string { return string(e) }

const (
	errUnavailable = constError("service unavailable (injected)")
	errDenied      = constError("access denied (injected)")
)
