package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// LoadTLS builds a mutual-TLS config for peer traffic from PEM files: this
// member's certificate and key (presented both when accepting and when
// dialing), and the CA that must have signed every peer's certificate. Both
// sides verify each other: an accepted connection without a client
// certificate from that CA is refused. A peer's certificate must name the
// host part of the address it is dialed at (an IP SAN for IP addresses).
//
// Pass the result as Config.TLS.
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("transport: load tls key pair %s, %s: %w", certFile, keyFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("transport: read tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("transport: tls ca %s: %w", caFile, errors.New("no PEM certificate found"))
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
