package lists

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pinsync/pinsync/consumer/member"
)

// bounds returns where partition p of the changes topic stands: its log
// start and end, and the list group's committed offset (-1: none).
func (s *Stage) bounds(ctx context.Context, p int32) (bounds, error) {
	adm := kadm.NewClient(s.member.Client())
	b := bounds{committed: -1}
	for _, l := range []struct {
		list func(context.Context, ...string) (kadm.ListedOffsets, error)
		to   *int64
	}{{adm.ListStartOffsets, &b.start}, {adm.ListEndOffsets, &b.end}} {
		offs, err := l.list(ctx, s.cfg.Topic)
		if err != nil {
			return b, err
		}
		o, ok := offs.Lookup(s.cfg.Topic, p)
		if !ok {
			return b, fmt.Errorf("no offsets for %s/%d", s.cfg.Topic, p)
		}
		if o.Err != nil {
			return b, o.Err
		}
		*l.to = o.Offset
	}
	committed, err := adm.FetchOffsets(ctx, s.cfg.Group)
	if err != nil {
		return b, err
	}
	if o, ok := committed.Lookup(s.cfg.Topic, p); ok && o.Err == nil && o.At >= 0 {
		b.committed = o.At
	}
	return b, nil
}

// pause pauses fetching partition p: its worker halted.
func (s *Stage) pause(p int32) {
	s.member.Client().PauseFetchPartitions(map[string][]int32{s.cfg.Topic: {p}})
}

// Halts returns why each owned partition that halted did (see
// member.Halt), by partition.
func (s *Stage) Halts() map[int32]*member.Halted { return s.member.Halts() }

// Halted reports the owned partitions that halted, with their reasons; nil
// when none did.
func (s *Stage) Halted() error { return s.member.HaltError("list stage: partitions halted") }
