package server

import "time"

// SetH2WriteTimeout shortens the weft.h2 write deadline for a test; the returned
// function restores it.
func SetH2WriteTimeout(d time.Duration) (restore func()) {
	old := h2WriteTimeout
	h2WriteTimeout = d
	return func() { h2WriteTimeout = old }
}

// AppAddress is an address of this host for apps behind the inbound proxy.
var AppAddress = hostAppAddr

// Weft.h2 limits the tests check against.
const (
	H2StreamWindow  = h2StreamWindow
	H2ConnWindow    = h2ConnWindow
	H2MaxHeaderList = h2MaxHeaderList
)
