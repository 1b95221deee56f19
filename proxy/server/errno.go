package server

import "syscall"

// errTooManyFiles is returned by accept when the process is out of descriptors.
var errTooManyFiles error = syscall.EMFILE
