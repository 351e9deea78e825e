package runtime

import (
	"context"
	"io"
	"log/slog"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	lslog "github.com/sirupsen/logrus/hooks/slog"
)

// The containerd client library logs through logrus (containerd/log), by
// default to stderr in its own format. withClientLog makes what it logs on
// ctx go to the runtime's slog logger instead, one level lower: the
// client's "info" (a registry fetch that failed, say) is detail to the
// agent, whose caller gets the error anyway.
func (c *Containerd) withClientLog(ctx context.Context) context.Context {
	return log.WithLogger(ctx, c.clientLog)
}

func newClientLog(l *slog.Logger) *log.Entry {
	lg := logrus.New()
	lg.SetOutput(io.Discard)
	lg.SetFormatter(discardFormatter{})
	lg.SetLevel(logrus.DebugLevel) // the slog handler decides what is kept
	lg.AddHook(lslog.NewHook(l.With("component", "containerd-client"), &lslog.HookOptions{
		LevelMapper: func(lv logrus.Level) slog.Level {
			switch {
			case lv <= logrus.ErrorLevel:
				return slog.LevelWarn
			case lv == logrus.WarnLevel:
				return slog.LevelInfo
			default:
				return slog.LevelDebug
			}
		},
	}))
	return logrus.NewEntry(lg)
}

type discardFormatter struct{}

func (discardFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }
