package dbtest

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/dbkit-go/database/dbkit"
)

// DefaultImage is the PostgreSQL image StartContainer runs unless
// DBKIT_TEST_POSTGRES_IMAGE names another.
const DefaultImage = "postgres:15-alpine"

// DockerAvailable reports, within a few seconds, whether Testcontainers can
// reach a Docker engine; the error says why not.
func DockerAvailable(ctx context.Context) (err error) {
	defer func() {
		// Testcontainers panics on some broken Docker set-ups.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errNoDocker, r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	provider, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(tclog.NewNoopLogger()))
	if err != nil {
		return fmt.Errorf("%w: %v", errNoDocker, err)
	}
	defer func() { _ = provider.Close() }()
	if err := provider.Health(ctx); err != nil {
		return fmt.Errorf("%w: %v", errNoDocker, err)
	}
	return nil
}

// StartContainer runs PostgreSQL in a container with Testcontainers: the
// image DBKIT_TEST_POSTGRES_IMAGE or [DefaultImage], data on a tmpfs,
// durability off. Stop removes the container; so does Testcontainers'
// reaper (Ryuk) when the process ends, or, with Ryuk off
// (TESTCONTAINERS_RYUK_DISABLED=true), a reaper process of dbtest's.
func StartContainer(ctx context.Context) (*Server, error) {
	if err := DockerAvailable(ctx); err != nil {
		return nil, fmt.Errorf("dbtest: Testcontainers: %w", err)
	}
	image := os.Getenv(EnvImage)
	if image == "" {
		image = DefaultImage
	}
	password := randomHex(16)
	ctr, err := tcpostgres.Run(ctx, image,
		testcontainers.WithLogger(tclog.NewNoopLogger()),
		tcpostgres.WithDatabase("postgres"),
		tcpostgres.WithUsername("postgres"),
		tcpostgres.WithPassword(password),
		tcpostgres.BasicWaitStrategies(),
		testcontainers.WithTmpfs(map[string]string{"/var/lib/postgresql/data": "rw"}),
		// The module's command is already "postgres -c fsync=off"; these add to it.
		testcontainers.WithCmdArgs(
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=300",
		),
	)
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		return nil, fmt.Errorf("dbtest: start %s with Testcontainers: %w", image, err)
	}
	host, err := ctr.Host(ctx)
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("dbtest: container host: %w", err)
	}
	port, err := ctr.MappedPort(ctx, "5432/tcp")
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("dbtest: container port: %w", err)
	}
	s := &Server{
		source: SourceDocker,
		admin: dbkit.Config{
			Host: host, Port: int(port.Num()), Database: "postgres", User: "postgres",
			Password: password, SSLMode: "disable", ApplicationName: "dbtest",
		},
		stop:        func(context.Context) error { return testcontainers.TerminateContainer(ctr) },
		containerID: ctr.GetContainerID(),
	}
	s.hint = func(db string) string {
		return fmt.Sprintf("psql %q (password: see the container's POSTGRES_PASSWORD; while the container runs)",
			s.configFor(db).String())
	}
	if err := s.connectAdmin(ctx); err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, err
	}
	// Without Ryuk nothing would remove the container of a test process
	// that ends without stopping it (dbtest.Shared's, always): a reaper
	// process of dbtest's does, when this one ends.
	if ryukDisabled() {
		if err := startReaper(ctr.GetContainerID()); err != nil {
			_ = testcontainers.TerminateContainer(ctr)
			return nil, fmt.Errorf("dbtest: start the container's reaper: %w", err)
		}
	}
	return s, nil
}
