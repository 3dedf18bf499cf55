package proxy

import (
	"bytes"
	"net"
	"net/netip"
)

// clientAddr is the client's address: the TCP peer, unless the peer is a
// trusted proxy, in which case the right-most X-Forwarded-For entry that is
// not itself trusted.
func clientAddr(peer net.Addr, xff []byte, trusted []netip.Prefix) netip.Addr {
	var a netip.Addr
	if tcp, ok := peer.(*net.TCPAddr); ok {
		a, _ = netip.AddrFromSlice(tcp.IP)
		a = a.Unmap()
	}
	if len(trusted) == 0 || !isTrusted(a, trusted) {
		return a
	}
	for len(xff) > 0 {
		i := bytes.LastIndexByte(xff, ',')
		part := bytes.TrimSpace(xff[i+1:])
		xff = xff[:max(i, 0)]
		ip, err := netip.ParseAddr(string(part))
		if err != nil {
			return a
		}
		ip = ip.Unmap()
		if !isTrusted(ip, trusted) {
			return ip
		}
		a = ip
		if i < 0 {
			break
		}
	}
	return a
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipHashKey is the part of a for ip_hash: the first three octets of IPv4,
// the whole IPv6 address, as NGINX does. It writes into buf.
func ipHashKey(a netip.Addr, buf *[16]byte) []byte {
	if !a.IsValid() {
		return nil
	}
	if a.Is4() {
		v := a.As4()
		copy(buf[:], v[:3])
		return buf[:3]
	}
	*buf = a.As16()
	return buf[:16]
}
