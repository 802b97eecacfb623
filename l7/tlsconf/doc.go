// Package tlsconf builds the crypto/tls configurations of layer 7 services
// from their config: the server side a listener terminates TLS with, and
// the client side the proxy and the health checks speak to https backends.
package tlsconf
