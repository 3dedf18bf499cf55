package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"time"

	"github.com/shoal-lb/shoal/lb"
	"github.com/valyala/fasthttp"
)

// serveUpgrade proxies a protocol switch (WebSocket and the like): it dials
// a backend, sends the request with its Connection and Upgrade headers,
// and once the backend has answered, hands both connections to two copy
// goroutines. Only a failed dial is retried, on another backend. The
// backend counts the connection as in flight until it closes.
func (p *Proxy) serveUpgrade(ctx *fasthttp.RequestCtx, pool *lb.Pool, lr *lb.Request) (*lb.Backend, error) {
	head := upgradeRequestHead(&ctx.Request)
	var b *lb.Backend
	var conn net.Conn
	for attempt := 0; ; attempt++ {
		lr.Now = time.Now().UnixNano()
		var next *lb.Backend
		var err error
		pool, next, _, err = p.pick(pool, lr)
		if next == nil {
			return b, err
		}
		b = next
		conn, err = net.DialTimeout("tcp", b.Address(), p.cfg.ConnectTimeout)
		if err == nil {
			break
		}
		b.ReportFailure(time.Now())
		if attempt >= pool.MaxRetries() {
			return b, err
		}
		lr.Tried = append(lr.Tried, b)
	}
	b.Acquire()
	fail := func(err error) (*lb.Backend, error) {
		conn.Close()
		p.release(pool, b, 0)
		b.ReportFailure(time.Now())
		return b, err
	}
	conn.SetDeadline(time.Now().Add(p.cfg.BackendTimeout))
	if _, err := conn.Write(head); err != nil {
		return fail(err)
	}
	br := bufio.NewReader(conn)
	respHead, err := readHead(br)
	if err != nil {
		return fail(err)
	}
	conn.SetDeadline(time.Time{})
	ctx.HijackSetNoResponse(true)
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols) // for the access log
	ctx.Hijack(func(client net.Conn) {
		defer p.release(pool, b, 0)
		defer conn.Close()
		if _, err := client.Write(respHead); err != nil {
			return
		}
		done := make(chan struct{}, 2)
		go func() { // client -> backend
			io.Copy(conn, client)
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			done <- struct{}{}
		}()
		go func() { // backend -> client
			io.Copy(client, br)
			client.Close()
			done <- struct{}{}
		}()
		<-done
		conn.Close()
		client.Close()
		<-done
	})
	return b, nil
}

// upgradeRequestHead serialises the request header for an upgrade: hop-by-hop
// headers stay, since the switch needs Connection and Upgrade.
func upgradeRequestHead(req *fasthttp.Request) []byte {
	var buf bytes.Buffer
	buf.Write(req.Header.Method())
	buf.WriteByte(' ')
	buf.Write(req.Header.RequestURI())
	buf.WriteString(" HTTP/1.1\r\n")
	req.Header.VisitAll(func(k, v []byte) {
		if bytes.EqualFold(k, []byte("Connection")) {
			return
		}
		buf.Write(k)
		buf.WriteString(": ")
		buf.Write(v)
		buf.WriteString("\r\n")
	})
	buf.WriteString("Connection: Upgrade\r\n\r\n")
	return buf.Bytes()
}

var errHeadTooLarge = errors.New("backend response header too large")

// readHead reads a response head up to and including the blank line.
func readHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		head = append(head, line...)
		if len(head) > 64<<10 {
			return nil, errHeadTooLarge
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return head, nil
		}
	}
}
