// Package layer converts between OCI layer tarballs and overlayfs directories.
//
// WriteDiff and Commit turn an overlayfs upperdir into a deterministic OCI layer
// tar (whiteouts, opaque directories, hardlinks, xattrs) and compress it while
// computing its digests. Apply does the reverse: it extracts a layer into an
// empty directory in overlayfs lowerdir form, treating the stream as hostile
// input (every path is confined to the target directory). Unpack is the plain
// tar extraction used by ADD for local archives.
//
// All functions that touch the filesystem expect to run as root on Linux.
package layer
