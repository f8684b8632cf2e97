package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap/zaptest"

	"github.com/sglangd/sglangd/pkg/api"
)

// selfSigned writes a loopback certificate and key and returns their paths
// and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sglangd-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

func TestTLSListener(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s, err := New(Options{Logger: zaptest.NewLogger(t), Build: api.BuildInfo{Version: "v-tls"}, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ListenTCP(context.Background(), "127.0.0.1:0", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(context.Background(), ln, true) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	host := "https://" + ln.Addr().String()
	tlsConf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	tests := []struct {
		name  string
		opts  []api.ClientOption
		check func(error) bool
	}{
		{"trusted CA and token", []api.ClientOption{api.WithTLSConfig(tlsConf), api.WithToken(testToken)}, func(err error) bool { return err == nil }},
		{"trusted CA, no token", []api.ClientOption{api.WithTLSConfig(tlsConf)}, func(err error) bool { return errors.Is(err, errdefs.ErrUnauthenticated) }},
		{"untrusted certificate", []api.ClientOption{api.WithToken(testToken)}, func(err error) bool { return errors.Is(err, errdefs.ErrUnavailable) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := api.NewClient(host, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Version(context.Background()); !tt.check(err) {
				t.Errorf("unexpected result: %v", err)
			}
		})
	}

	if _, err := ListenTCP(context.Background(), "127.0.0.1:0", certFile, certFile); err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad key pair accepted: %v", err)
	}
}
