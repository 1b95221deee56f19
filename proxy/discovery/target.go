package discovery

import "github.com/weftmesh/weft/proxy/server"

// Target is what the data path looks up (server.Target).
type Target = server.Target

// The client is the destination service's implementation of the data path's Source.
var _ server.Source = (*Client)(nil)
