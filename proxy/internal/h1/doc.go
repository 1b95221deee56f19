// Package h1 is Weft's own HTTP/1.1 (RFC 9112) for the proxy's common cases, both
// ends: the Server that reads apps' (and weft.h1 peers') requests on the connection's
// own goroutine and checks every request header's framing before anything is
// forwarded, and the Client that sends bodiless repeatable requests on the caller's
// goroutine. What they do not take they leave to net/http: the server hands the
// connection over (ServeConnOpts.HandOver) for one checked request, and the proxy's
// transports send other requests through http.Transport (CanCarry says which).
//
// Like proxy/internal/h2, its contract with the rest of the proxy is an http.Handler
// and a few fields (a function that runs handlers, a Logger, a Draining registry);
// informational responses travel through proxy/internal/httpmsg. It imports only the
// standard library, golang.org/x/net and proxy/internal/httpmsg.
//
// Files: framing.go is the request-smuggling defence (the header check, the guard of
// what net/http reads); server.go the connection loop; response.go its
// http.ResponseWriter; client.go the client and its pool; fields.go what both write.
package h1
