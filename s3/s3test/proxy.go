package s3test

import (
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Proxy sits between a client and an S3 server on 127.0.0.1, records
// every request, and injects faults: error answers, connection resets in
// the middle of a body, truncated GET bodies, delays, a blackholed or a
// fully down store.
type Proxy struct {
	URL string

	mu       sync.Mutex
	fail     func(*http.Request) int // status to answer instead of forwarding; 0 forwards
	faults   Faults
	rnd      *rand.Rand
	injected map[string]int
	requests []Request // every request seen, in order
	closed   chan struct{}
}

// Faults says what the proxy injects. Rates are per request, from a seeded
// generator, so a run can be repeated.
type Faults struct {
	ErrorRate    float64       // answer 500, 503 or 503 SlowDown
	ResetRate    float64       // drop the connection halfway through the request or response body
	TruncateRate float64       // end a GET response body halfway
	Delay        time.Duration // wait this long before forwarding
	Blackhole    bool          // never answer: hold the request until the client gives up
	Down         bool          // close every connection at once, as a dead store does
	// Lies a gateway or a buggy store tells on every GET of an object:
	HalfBody bool // send half the body, under a Content-Length that says half
	FlipByte bool // flip the middle byte, every header (ETag included) intact
}

// NewProxy starts a proxy to target on 127.0.0.1, closed at test end.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{rnd: rand.New(rand.NewPCG(1, 2)), injected: map[string]int{}, closed: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = nil
	// A transport of its own, so that the test's end can close its idle
	// connections to the store (the default one would keep them).
	transport := http.DefaultTransport.(*http.Transport).Clone()
	rp.Transport = transport
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(rp, w, r)
	}), ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(p.closed)
		srv.Close()
		transport.CloseIdleConnections()
	})
	p.URL = "http://" + ln.Addr().String()
	return p
}

// SetFail installs fn to decide which requests fail (nil: none).
func (p *Proxy) SetFail(fn func(*http.Request) int) {
	p.mu.Lock()
	p.fail = fn
	p.mu.Unlock()
}

// SetFaults replaces the injected faults; seed makes the run repeatable.
func (p *Proxy) SetFaults(f Faults, seed uint64) {
	p.mu.Lock()
	p.faults = f
	p.rnd = rand.New(rand.NewPCG(seed, seed^0x5eed))
	p.mu.Unlock()
}

// Injected returns how many faults of each kind were injected.
func (p *Proxy) Injected() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.injected {
		out[k] = v
	}
	return out
}

// decide picks this request's fault under the lock.
func (p *Proxy) decide(r *http.Request) (fault string, f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f = p.faults
	switch {
	case f.Down:
		fault = "down"
	case f.Blackhole:
		fault = "blackhole"
	case p.rnd.Float64() < f.ErrorRate:
		fault = "error"
	case p.rnd.Float64() < f.ResetRate:
		fault = "reset"
	case r.Method == http.MethodGet && p.rnd.Float64() < f.TruncateRate:
		fault = "truncate"
	case (f.HalfBody || f.FlipByte) && (Request{Method: r.Method, Query: r.URL.RawQuery, Header: r.Header}).Op() == "GetObject":
		fault = "lie"
	}
	if fault != "" {
		p.injected[fault]++
	}
	return fault, f
}

func (p *Proxy) serve(rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	fail := p.fail
	i := len(p.requests)
	p.requests = append(p.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()})
	p.mu.Unlock()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		p.mu.Lock()
		if i < len(p.requests) {
			p.requests[i].Status = sw.status
		}
		p.mu.Unlock()
	}()
	if fail != nil {
		if code := fail(r); code != 0 {
			writeError(sw, code, "ServiceUnavailable")
			return
		}
	}
	fault, f := p.decide(r)
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	switch fault {
	case "down":
		// Abort without an answer: the client sees the connection drop.
		panic(http.ErrAbortHandler)
	case "blackhole":
		select {
		case <-r.Context().Done():
		case <-p.closed:
		}
		return
	case "error":
		codes := []struct {
			status int
			code   string
		}{{500, "InternalError"}, {503, "ServiceUnavailable"}, {503, "SlowDown"}}
		c := codes[int(r.ContentLength+int64(i))%len(codes)]
		writeError(sw, c.status, c.code)
		return
	case "reset":
		if r.ContentLength > 1 {
			// Take half the upload, then drop the connection.
			io.CopyN(io.Discard, r.Body, r.ContentLength/2)
			panic(http.ErrAbortHandler)
		}
		rp.ServeHTTP(&cutWriter{statusWriter: sw, frac: 2}, r)
		return
	case "truncate":
		rp.ServeHTTP(&cutWriter{statusWriter: sw, frac: 2}, r)
		return
	case "lie":
		rp.ServeHTTP(&lyingWriter{statusWriter: sw, half: f.HalfBody, flip: f.FlipByte}, r)
		return
	}
	rp.ServeHTTP(sw, r)
}

func writeError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>injected by the test proxy</Message></Error>`))
}

// cutWriter forwards the response until 1/frac of its declared length has
// gone out, then aborts the connection: the client gets a short body.
type cutWriter struct {
	*statusWriter
	frac    int64
	limit   int64
	written int64
}

func (c *cutWriter) WriteHeader(code int) {
	if n, err := strconv.ParseInt(c.Header().Get("Content-Length"), 10, 64); err == nil && n > 1 {
		c.limit = n / c.frac
	}
	c.statusWriter.WriteHeader(code)
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if c.limit > 0 && c.written+int64(len(b)) > c.limit {
		n, _ := c.statusWriter.Write(b[:c.limit-c.written])
		c.written += int64(n)
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	n, err := c.statusWriter.Write(b)
	c.written += int64(n)
	return n, err
}

// lyingWriter forwards a GET's answer with its body changed: cut to half
// under a Content-Length that says half, or with its middle byte flipped.
type lyingWriter struct {
	*statusWriter
	half, flip bool
	size, at   int64
}

func (l *lyingWriter) WriteHeader(code int) {
	l.size, _ = strconv.ParseInt(l.Header().Get("Content-Length"), 10, 64)
	if l.half && code == http.StatusOK && l.size > 1 {
		l.Header().Set("Content-Length", strconv.FormatInt(l.size/2, 10))
	}
	l.statusWriter.WriteHeader(code)
}

func (l *lyingWriter) Write(b []byte) (int, error) {
	n := len(b)
	out := b
	switch {
	case l.half && l.size > 1:
		keep := max(min(int64(len(b)), l.size/2-l.at), 0)
		out = b[:keep]
	case l.flip && l.size > 0 && l.size/2 >= l.at && l.size/2 < l.at+int64(len(b)):
		out = append([]byte(nil), b...)
		out[l.size/2-l.at] ^= 0x20
	}
	l.at += int64(n)
	if _, err := l.statusWriter.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

// Requests returns the requests seen so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Reset forgets the requests seen so far.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.requests = nil
	p.mu.Unlock()
}

// Request is what the proxy saw of one request.
type Request struct {
	Method, Path, Query string
	Header              http.Header
	Status              int // the answer's status; 0 while in flight or when none was sent
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Op names the S3 operation of a request, from its method and query.
func (r Request) Op() string {
	q, _ := url.ParseQuery(r.Query)
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodPost && q.Has("delete"):
		return "DeleteObjects"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodGet && q.Has("uploads"):
		return "ListMultipartUploads"
	case r.Method == http.MethodGet && (q.Has("list-type") || q.Has("prefix") || q.Has("delimiter")):
		return "ListObjects"
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		return "CopyObject"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodGet:
		return "GetObject"
	case r.Method == http.MethodHead:
		return "HeadObject"
	case r.Method == http.MethodDelete:
		return "DeleteObject"
	}
	return r.Method
}
