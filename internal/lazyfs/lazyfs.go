//go:build linux

// Package lazyfs is a FUSE filesystem that loses, on demand, every write
// that was not fsynced, as a power cut loses what sits in the page cache.
// kill -9 keeps the page cache, so it cannot tell a store that fsyncs
// before acknowledging from one that does not; Crash can. It plays the part
// LazyFS (github.com/dsrhaslab/lazyfs) plays elsewhere, which cannot be
// built here.
//
// It is a loopback of a host directory: writes go through to the host file
// at once, and for each one the bytes it overwrote are kept. An fsync or
// fdatasync of a file forgets them (the file is durable as it is). Crash,
// after the filesystem is unmounted, puts every unsynced range back as it
// was at the last fsync and truncates each file to its synced size. Only
// file contents are lazy: creating, renaming and deleting files is durable
// at once (the store it tests creates its file once, and fsyncs it).
package lazyfs

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted lazy filesystem.
type FS struct {
	// Dir is where it is mounted.
	Dir     string
	backing string
	server  *fuse.Server

	mu    sync.Mutex
	files map[string]*fileState // host path -> what an unsynced crash undoes
}

// fileState is what a crash must undo in one file.
type fileState struct {
	syncedSize int64
	undo       []region // oldest first
}

// region is a range as it was before a write or a truncate overwrote it.
type region struct {
	off int64
	old []byte
}

// Mount mounts a lazy view of backing at dir (both must exist), served by
// this process. It needs /dev/fuse and the right to mount (root). A process
// that memory-maps files on it must use MountProcess instead.
func Mount(backing, dir string) (*FS, error) {
	l := &FS{Dir: dir, backing: backing, files: map[string]*fileState{}}
	loopback, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: %w", err)
	}
	inner, ok := loopback.(*fs.LoopbackNode)
	if !ok {
		return nil, fmt.Errorf("lazyfs: loopback root is %T", loopback)
	}
	root := &node{LoopbackNode: inner, lazy: l}
	inner.RootData.RootNode = root
	server, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{FsName: "lazyfs", Name: "lazyfs", DirectMount: true},
	})
	if err != nil {
		return nil, fmt.Errorf("lazyfs: mount %s: %w", dir, err)
	}
	l.server = server
	return l, nil
}

// Unmount unmounts the filesystem; what was not synced is still in the
// host files until Crash.
func (l *FS) Unmount() error {
	if l.server == nil {
		return nil
	}
	err := l.server.Unmount()
	l.server = nil
	return err
}

// Crash unmounts the filesystem, then drops every write not fsynced since:
// each file is as it was at its last fsync. Mount again to go on.
func (l *FS) Crash() error {
	if err := l.Unmount(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for path, st := range l.files {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, iofs.ErrNotExist) {
			continue // deleted: that is durable at once
		}
		if err != nil {
			return fmt.Errorf("lazyfs: crash: %w", err)
		}
		for i := len(st.undo) - 1; i >= 0; i-- {
			if _, err := f.WriteAt(st.undo[i].old, st.undo[i].off); err != nil {
				f.Close()
				return fmt.Errorf("lazyfs: crash: %w", err)
			}
		}
		err = f.Truncate(st.syncedSize)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("lazyfs: crash: %w", err)
		}
	}
	l.files = map[string]*fileState{}
	return nil
}

// Unsynced reports how many writes and truncates would be lost now.
func (l *FS) Unsynced() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, st := range l.files {
		n += len(st.undo)
	}
	return n
}

// state returns the crash state of the host file path, creating it from
// the file's size when the file is first changed.
func (l *FS) stateLocked(path string) *fileState {
	if st, ok := l.files[path]; ok {
		return st
	}
	st := &fileState{}
	if fi, err := os.Stat(path); err == nil {
		st.syncedSize = fi.Size()
	}
	l.files[path] = st
	return st
}

// remember keeps the bytes of path in [off, off+n) before they change.
func (l *FS) remember(path string, off, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateLocked(path)
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || off >= fi.Size() {
		// Past the end: nothing to restore, the truncate to the synced size drops it.
		st.undo = append(st.undo, region{off: off})
		return
	}
	n = min(n, fi.Size()-off)
	old := make([]byte, n)
	if _, err := f.ReadAt(old, off); err != nil {
		return
	}
	st.undo = append(st.undo, region{off: off, old: old})
}

// renamed moves what a crash undoes in the file or directory oldPath, and
// in the files below it, to their new paths.
func (l *FS) renamed(oldPath, newPath string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for path, st := range l.files {
		if rest, ok := strings.CutPrefix(path, oldPath); ok && (rest == "" || rest[0] == filepath.Separator) {
			delete(l.files, path)
			l.files[newPath+rest] = st
		}
	}
}

// synced forgets what a crash would undo in path: it is durable now.
func (l *FS) synced(path string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateLocked(path)
	st.undo = nil
	if fi, err := os.Stat(path); err == nil {
		st.syncedSize = fi.Size()
	}
}

// node is a loopback node whose open files are lazy.
type node struct {
	*fs.LoopbackNode
	lazy *FS
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
	_ fs.NodeRenamer     = (*node)(nil)
)

// WrapChild implements fs.NodeWrapChilder: every node below is lazy too.
func (n *node) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	if lb, ok := ops.(*fs.LoopbackNode); ok {
		return &node{LoopbackNode: lb, lazy: n.lazy}
	}
	return ops
}

func (n *node) hostPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

// Open implements fs.NodeOpener.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &file{inner: fh, node: n}, fl, 0
}

// Create implements fs.NodeCreater.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	child, ok := inode.Operations().(*node)
	if !ok {
		return nil, nil, 0, syscall.EIO
	}
	return inode, &file{inner: fh, node: child}, fl, 0
}

// Rename implements fs.NodeRenamer: a rename is durable at once, and what a
// crash undoes follows the renamed file (etcd's log is made in a temporary
// directory renamed into place).
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if p, ok := newParent.(*node); ok && errno == 0 {
		n.lazy.renamed(filepath.Join(n.hostPath(), name), filepath.Join(p.hostPath(), newName))
	}
	return errno
}

// Setattr implements fs.NodeSetattrer: a truncate is lazy too.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		n.rememberTruncate(int64(size))
	}
	if f, ok := fh.(*file); ok {
		fh = f.inner
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

func (n *node) rememberTruncate(size int64) {
	path := n.hostPath()
	if fi, err := os.Stat(path); err == nil && size < fi.Size() {
		n.lazy.remember(path, size, fi.Size()-size)
	} else {
		n.lazy.remember(path, size, 0)
	}
}

// file is an open lazy file: the loopback file, with writes remembered.
type file struct {
	inner fs.FileHandle
	node  *node
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileSetattrer = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
)

// Read implements fs.FileReader.
func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.inner.(fs.FileReader).Read(ctx, dest, off)
}

// Write implements fs.FileWriter: the overwritten bytes are kept first.
func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.node.lazy.remember(f.node.hostPath(), off, int64(len(data)))
	return f.inner.(fs.FileWriter).Write(ctx, data, off)
}

// Fsync implements fs.FileFsyncer: the file is durable as it is.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := f.inner.(fs.FileFsyncer).Fsync(ctx, flags); errno != 0 {
		return errno
	}
	f.node.lazy.synced(f.node.hostPath())
	return 0
}

// Flush implements fs.FileFlusher (close(2): not a sync).
func (f *file) Flush(ctx context.Context) syscall.Errno {
	return f.inner.(fs.FileFlusher).Flush(ctx)
}

// Release implements fs.FileReleaser.
func (f *file) Release(ctx context.Context) syscall.Errno {
	return f.inner.(fs.FileReleaser).Release(ctx)
}

// Getattr implements fs.FileGetattrer.
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.inner.(fs.FileGetattrer).Getattr(ctx, out)
}

// Setattr implements fs.FileSetattrer: a truncate is lazy too.
func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		f.node.rememberTruncate(int64(size))
	}
	return f.inner.(fs.FileSetattrer).Setattr(ctx, in, out)
}

// Lseek implements fs.FileLseeker.
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.inner.(fs.FileLseeker).Lseek(ctx, off, whence)
}

// Allocate implements fs.FileAllocater: growing is lazy too.
func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	f.node.lazy.remember(f.node.hostPath(), int64(off), int64(size))
	return f.inner.(fs.FileAllocater).Allocate(ctx, off, size, mode)
}
