package discovery

import "github.com/weftmesh/weft/proxy/destination"

// Target is what the data path looks up (destination.Target).
type Target = destination.Target

// The client is the destination service's implementation of the data path's Source.
var _ destination.Source = (*Client)(nil)
