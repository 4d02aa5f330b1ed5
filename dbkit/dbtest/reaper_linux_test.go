package dbtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

const envReaperHelper = "DBKIT_TEST_REAPER_HELPER"

// With Ryuk off, the container of a test process that ends without
// stopping it (killed outright here) is removed by dbtest's reaper. The
// helper process runs with Ryuk off whatever this one's setting, so that
// the test runs wherever Docker does.
func TestContainerReapedWhenProcessEnds(t *testing.T) {
	if os.Getenv(envReaperHelper) == "1" {
		s, err := StartContainer(context.Background())
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println("READY", s.containerID)
		select {} // wait to be killed
	}
	if err := DockerAvailable(context.Background()); err != nil {
		t.Skipf("Testcontainers needs a Docker engine and none answers here: %v", err)
	}
	cmd, line, err := startHelper(t, "TestContainerReapedWhenProcessEnds", envReaperHelper,
		"TESTCONTAINERS_RYUK_DISABLED=true")
	id, ready := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if err != nil || !ready || id == "" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	ctx := context.Background()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err != nil {
		t.Fatalf("the helper's container %s is not there while it runs: %v", id, err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err != nil {
			return // gone
		}
	}
	_, _ = cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	t.Fatalf("container %s still there 30 s after its test process was killed", id)
}
