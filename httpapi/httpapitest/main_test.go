package httpapitest

import "testing"

func TestAfterRun(t *testing.T) {
	clean := NewLogCapture()
	clean.Logger().Info("token refreshed", "user", "alice")
	if got := AfterRun(0, clean); got != 0 {
		t.Errorf("AfterRun(0, clean logs) = %d, want 0", got)
	}
	if got := AfterRun(3, clean); got != 3 {
		t.Errorf("AfterRun(3, clean logs) = %d, want the tests' own code", got)
	}

	leaky := NewLogCapture()
	leaky.AddSecret("tb_s3cret-value")
	leaky.Logger().Info("oops", "key", "tb_s3cret-value")
	if got := AfterRun(0, leaky); got != 1 {
		t.Errorf("AfterRun(0, a secret logged) = %d, want 1", got)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { <-stop; close(done) }()
	got := AfterRun(0, clean)
	close(stop)
	<-done
	if got != 1 {
		t.Errorf("AfterRun(0) with a goroutine left running = %d, want 1", got)
	}
}
