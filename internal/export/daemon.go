package export

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/store"
)

// DockerSocket is the Docker daemon's unix socket: DOCKER_HOST=unix://PATH,
// else /var/run/docker.sock.
func DockerSocket() (string, error) {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			return p, nil
		}
		return "", fmt.Errorf("--load: DOCKER_HOST=%s: only unix:// sockets are supported", h)
	}
	return "/var/run/docker.sock", nil
}

// LoadIntoDocker streams img as a `docker save` archive named names to the
// /images/load endpoint of the Docker daemon (DockerSocket), as `docker
// buildx build --load` does.
func LoadIntoDocker(ctx context.Context, s *store.Store, img *image.Image, names []string) error {
	sock, err := DockerSocket()
	if err != nil {
		return err
	}
	if _, err := os.Stat(sock); err != nil {
		return fmt.Errorf("--load: no Docker daemon socket at %s: %w", sock, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(Docker(pw, s, img, names)) }()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker/images/load?quiet=1", pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("--load: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"error"`) {
		return fmt.Errorf("--load: the Docker daemon answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
