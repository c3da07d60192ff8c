// Command upstream runs upstream kfake, unpatched, as a one-broker cluster
// on 127.0.0.1 and prints its address on stdout; it stops when stdin
// closes. See ../doc.go.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	topic := flag.String("topic", "", "topic to create")
	partitions := flag.Int("partitions", 1, "its partitions")
	minSession := flag.Duration("min-session-timeout", 6*time.Second, "group.min.session.timeout.ms")
	flag.Parse()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(*partitions), *topic),
		kfake.GroupMinSessionTimeout(*minSession))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println(c.ListenAddrs()[0])
	_, _ = io.Copy(io.Discard, os.Stdin)
}
