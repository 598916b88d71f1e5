package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a member certificate for 127.0.0.1 (usable as server and
// client) plus key and CA files, and returns their paths.
func (ca *testCA) issue(t testing.TB, name string) (certFile, keyFile, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, caFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	write := func(path string, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	write(caFile, ca.pem)
	return certFile, keyFile, caFile
}

func (ca *testCA) config(t testing.TB, name string) *tls.Config {
	t.Helper()
	cfg, err := LoadTLS(ca.issue(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func withTLS(cfg *tls.Config) func(*Config) { return func(c *Config) { c.TLS = cfg } }

// TestMutualTLS checks that members with certificates from the cluster CA
// talk (messages and snapshots), and that a member with a foreign
// certificate or without TLS cannot connect.
func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	a := newNode(t, 1, withTLS(ca.config(t, "m1")))
	b := newNode(t, 2, withTLS(ca.config(t, "m2")))
	mesh(t, a, b)
	a.Send([]raftpb.Message{app(1, 2, 1, 100)})
	b.Send([]raftpb.Message{app(2, 1, 1, 100)})
	waitFor(t, "delivery over tls", func() bool { return a.rec.count.Load() == 1 && b.rec.count.Load() == 1 })
	a.SendSnapshot(snapMsg(1, 2), newGen(3<<20), 3<<20)
	waitFor(t, "snapshot over tls", func() bool { return len(a.rec.reports()) == 1 })
	if !a.rec.reports()[0].ok {
		t.Fatal("snapshot over tls failed")
	}

	t.Run("foreign CA", func(t *testing.T) {
		other := newTestCA(t, "other-ca")
		c := newNode(t, 3, withTLS(other.config(t, "m3")))
		b.AddPeer(3, c.addr)
		c.AddPeer(2, b.addr)
		waitFor(t, "handshake failure seen by dialer", func() bool {
			return strings.Contains(c.PeerStats()[2].LastError, "tls")
		})
		waitFor(t, "handshake failure logged by acceptor", func() bool {
			return strings.Contains(b.logs.String(), "tls handshake failed")
		})
		if c.PeerStats()[2].Connected {
			t.Fatal("member with a foreign certificate connected")
		}
		b.RemovePeer(3)
	})

	t.Run("plaintext", func(t *testing.T) {
		d := newNode(t, 4)
		b.AddPeer(4, d.addr)
		d.AddPeer(2, b.addr)
		waitFor(t, "plaintext dial fails", func() bool { return d.PeerStats()[2].LastError != "" })
		if d.PeerStats()[2].Connected {
			t.Fatal("plaintext member connected to a tls member")
		}
		b.RemovePeer(4)
	})
}

func TestLoadTLSErrors(t *testing.T) {
	ca := newTestCA(t, "ca")
	cert, key, caFile := ca.issue(t, "m")
	bogus := filepath.Join(t.TempDir(), "bogus.pem")
	if err := os.WriteFile(bogus, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		cert, key, ca string
		want          string
	}{
		{"missing cert", "/nonexistent/cert.pem", key, caFile, "load tls key pair"},
		{"key mismatch", cert, bogus, caFile, "load tls key pair"},
		{"missing ca", cert, key, "/nonexistent/ca.pem", "read tls ca"},
		{"ca not pem", cert, key, bogus, "no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadTLS(tc.cert, tc.key, tc.ca)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err := LoadTLS(cert, key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatal("LoadTLS does not require client certificates")
	}
}
