package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/dustin/go-humanize"

	"github.com/s3mediafs/s3mediafs/cache"
)

// notifyReady tells systemd (Type=notify) the mount serves, then keeps its
// STATUS line current with the queue and cache figures. Without
// NOTIFY_SOCKET it does nothing.
func notifyReady(ctx context.Context, c *cache.Cache, log *slog.Logger) {
	sent, err := daemon.SdNotify(false, daemon.SdNotifyReady+"\n"+statusLine(c))
	if err != nil {
		log.Warn("systemd notification failed", "err", err)
	}
	if !sent {
		return
	}
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				daemon.SdNotify(false, statusLine(c))
			}
		}
	}()
}

// notifyStopping tells systemd the daemon is draining.
func notifyStopping(c *cache.Cache) {
	s := c.Status()
	daemon.SdNotify(false, fmt.Sprintf("%s\nSTATUS=stopping: draining %d uploads", daemon.SdNotifyStopping, s.QueueDepth))
}

func statusLine(c *cache.Cache) string {
	s := c.Status()
	return fmt.Sprintf("STATUS=%d files (%s) not yet in S3, %d owed; cache %s",
		s.DirtyFiles, humanize.IBytes(uint64(max(s.DirtyBytes, 0))), s.QueueDepth, humanize.IBytes(uint64(max(s.LocalBytes, 0))))
}
