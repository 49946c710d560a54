package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/archive"
	"github.com/strata-build/strata/internal/build"
	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/image"
)

func (a *app) loadCmd() *cobra.Command {
	var in string
	cmd := &cobra.Command{
		Use:   "load -i FILE",
		Short: "Load images from a docker-archive or OCI layout tar file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return usagef("give the archive with -i FILE")
			}
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			loaded, err := archive.Load(cmd.Context(), b.Store, in, build.HostPlatform())
			if err != nil {
				return err
			}
			for _, l := range loaded {
				for _, w := range l.Warnings {
					fmt.Fprintf(a.stderr, "warning: %s: %s\n", in, w)
				}
				for _, t := range l.Tags {
					fmt.Fprintf(a.stdout, "Loaded image: %s\n", t)
				}
				if len(l.Tags) == 0 {
					fmt.Fprintf(a.stdout, "Loaded image ID: %s\n", l.Image.Manifest.Config.Digest)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&in, "input", "i", "", "read from this tar archive")
	return cmd
}

// dockerSocket is the Docker daemon's unix socket: DOCKER_HOST=unix://PATH,
// else /var/run/docker.sock.
func dockerSocket() (string, error) {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			return p, nil
		}
		return "", fmt.Errorf("--load: DOCKER_HOST=%s: only unix:// sockets are supported", h)
	}
	return "/var/run/docker.sock", nil
}

// loadIntoDocker streams the image as a `docker save` archive to the
// daemon's /images/load endpoint, like `docker buildx build --load`.
func loadIntoDocker(ctx context.Context, b *build.Builder, img *image.Image, names []string) error {
	sock, err := dockerSocket()
	if err != nil {
		return err
	}
	if _, err := os.Stat(sock); err != nil {
		return fmt.Errorf("--load: no Docker daemon socket at %s: %w", sock, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(export.Docker(pw, b.Store, img, names)) }()
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
