package fanout

import "testing"

func TestSlowWatcherIsClosedAndNeverBlocksTheSender(t *testing.T) {
	b := New[int](4)
	slow, err := b.Watch([]int{-1})
	if err != nil {
		t.Fatal(err)
	}
	fast, _ := b.Watch(nil)
	got := 0
	for i := range 1000 {
		b.Send(i) // never blocks, whatever slow does
		for range len(fast.C()) {
			<-fast.C()
			got++
		}
	}
	if got != 1000 || fast.Overflowed() {
		t.Fatalf("the watcher that kept up got %d of 1000 (overflowed %v)", got, fast.Overflowed())
	}
	n := 0
	for range slow.C() { // drains what was buffered, then sees the close
		n++
	}
	if !slow.Overflowed() || n != 5 {
		t.Fatalf("slow watcher: overflowed %v after %d values; want closed after its buffer (1 initial + 4)", slow.Overflowed(), n)
	}
	if b.Len() != 1 {
		t.Fatalf("%d watchers open, want 1", b.Len())
	}
	fast.Stop()
	fast.Stop()
	b.Close()
	if _, err := b.Watch(nil); err != ErrClosed {
		t.Fatalf("Watch after Close = %v", err)
	}
}
