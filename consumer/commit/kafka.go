package commit

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Offsets commits offsets as cl's group member, with its member id and
// generation, and returns the first error, whether of the request or of a
// partition.
func Offsets(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) error {
	var commitErr error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					commitErr = errors.Join(commitErr, fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, kerr.ErrorForCode(p.ErrorCode)))
				}
			}
		}
	})
	return commitErr
}

// Expired reports whether a commit error says the group coordinator no
// longer counts this member at all: it was expired after its session
// timeout (a process paused past it, or cut off), or another process took
// its static instance id. Such a member owns nothing, whatever it still
// believes. A rebalance in progress or a newer generation
// (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION) is not expiry: a live member
// keeps its partitions until it is told to revoke them, and none is given
// to another member before.
func Expired(err error) bool {
	for _, e := range []error{kerr.UnknownMemberID, kerr.FencedInstanceID, kerr.FencedMemberEpoch, kerr.GroupIDNotFound} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Owns checks with the group coordinator that cl's member still belongs to
// the group, by committing at for topic's partition p (what the member last
// committed there, so nothing moves). It returns nil for a member the
// coordinator counts (a rebalance in progress included), and an error
// that Expired recognises for one it does not.
func Owns(ctx context.Context, cl *kgo.Client, topic string, p int32, at kgo.EpochOffset) error {
	err := Offsets(ctx, cl, map[string]map[int32]kgo.EpochOffset{topic: {p: at}})
	if err != nil && !Expired(err) && (errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.IllegalGeneration)) {
		return nil
	}
	return err
}
