package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"github.com/strata-build/strata/internal/image"
)

func (a *app) docsCmd() *cobra.Command {
	var manDir, mdDir string
	cmd := &cobra.Command{
		Use:   "docs --man DIR | --markdown DIR",
		Short: "Write strata's man pages or its markdown command reference",
		Long: `Write a page for every strata command: man pages (strata.1,
strata-build.1, ...) with --man, markdown (strata.md, strata_build.md, ...) with
--markdown. The pages are made from the same text as --help. Defaults that
depend on the user or the environment (--root, --config) are described, not
taken from the machine the pages are made on; SOURCE_DATE_EPOCH sets the date
in the man pages.`,
		Example: `  strata docs --man /usr/local/share/man/man1 && mandb -q
  strata docs --markdown docs/reference --man docs/man`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manDir == "" && mdDir == "" {
				return usagef("give --man DIR, --markdown DIR or both")
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			if root.Long == "" {
				root.Long = rootLong
				defer func() { root.Long = "" }()
			}
			restore := portableDefaults(root)
			defer restore()
			if manDir != "" {
				if err := os.MkdirAll(manDir, 0o755); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
				hdr := &doc.GenManHeader{Section: "1", Source: "strata " + Version, Manual: "strata manual"}
				epoch, err := image.EpochFromEnv()
				if err != nil {
					return usageError{err}
				}
				hdr.Date = epoch
				if err := doc.GenManTree(root, hdr, manDir); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
				fmt.Fprintf(a.stderr, "wrote the man pages to %s\n", manDir)
			}
			if mdDir != "" {
				if err := os.MkdirAll(mdDir, 0o755); err != nil {
					return fmt.Errorf("markdown reference: %w", err)
				}
				if err := doc.GenMarkdownTree(root, mdDir); err != nil {
					return fmt.Errorf("markdown reference: %w", err)
				}
				fmt.Fprintf(a.stderr, "wrote the markdown reference to %s\n", mdDir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "write man pages (section 1) to this directory")
	cmd.Flags().StringVar(&mdDir, "markdown", "", "write the markdown command reference to this directory")
	_ = cmd.MarkFlagDirname("man")
	_ = cmd.MarkFlagDirname("markdown")
	return cmd
}

// portableDefaults replaces, for the generated pages, the defaults that come
// from the user or the environment of the machine making them; it returns a
// function that puts them back.
func portableDefaults(root *cobra.Command) func() {
	described := map[string]string{
		"root":        "/var/lib/strata as root, else $XDG_DATA_HOME/strata",
		"config":      "/etc/strata/config.json as root, else $XDG_CONFIG_HOME/strata/config.json",
		"debug-cache": "false",
	}
	type saved struct {
		f   *pflag.Flag
		def string
	}
	var undo []saved
	visit := func(f *pflag.Flag) {
		if d, ok := described[f.Name]; ok && f.DefValue != d {
			undo = append(undo, saved{f, f.DefValue})
			f.DefValue = d
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(visit)
		c.PersistentFlags().VisitAll(visit)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return func() {
		for _, s := range undo {
			s.f.DefValue = s.def
		}
	}
}

// describe fills in the help of the commands whose own files leave it out
// (Long, Example), fixes "[OPTIONS] ... [flags]" usage lines and adds shell
// completions; text a command sets itself is kept.
func (a *app) describe(cmds ...*cobra.Command) []*cobra.Command {
	for _, c := range cmds {
		if h, ok := helpTexts[c.Name()]; ok {
			if c.Long == "" {
				c.Long = h.long
			}
			if c.Example == "" {
				c.Example = h.example
			}
		}
		if strings.Contains(c.Use, "[OPTIONS]") {
			c.DisableFlagsInUseLine = true
		}
		a.addCompletions(c)
	}
	return cmds
}

// rootLong describes strata as a whole, for strata(1).
const rootLong = `strata builds container images from Dockerfiles without a daemon. It reads a
multi-stage Dockerfile with BuildKit's parser, builds only the stages the
target needs (independent stages at the same time), runs RUN steps in runc on
overlayfs, and writes a standard OCI image: into its local store, a docker
load archive, an OCI layout archive, a directory, or a registry.

The store (--root) is an OCI image layout (index.json and blobs/, readable
with skopeo as oci:ROOT:NAME) plus the unpacked layers that overlayfs stacks.
Images in it are named as docker names them (busybox means
docker.io/library/busybox:latest) and can be given by name, NAME@DIGEST, or
image ID.

Environment:

    STRATA_ROOT              the store directory (--root)
    STRATA_CONFIG            the registry configuration file (--config)
    STRATA_REGISTRY_MIRRORS  registry mirrors: REGISTRY=URL[,REGISTRY=URL...]
    STRATA_REGISTRY_TIMEOUT  how long a silent registry is waited for (default 60s)
    STRATA_DEBUG_CACHE=1     explain every build cache miss
    STRATA_MAX_LAYER_ENTRIES most entries one layer tar may have (default 4194304)
    STRATA_MAX_LAYER_BYTES   most bytes the files of one layer, one ADD archive or one
                             ADD download may add up to (default 1TiB; 100MB, 2GiB…)
    STRATA_HTTP_TIMEOUT      how long an ADD URL may send nothing (default 30s)
    STRATA_SNAPSHOTTER       overlay (default) or native: plain copies instead of
                             overlayfs mounts, for where mounting is not allowed (slower)
    STRATA_CPUPROFILE=FILE   write a pprof CPU profile of the command to FILE
    SOURCE_DATE_EPOCH        timestamps for reproducible images

Registry credentials come from Docker's config (~/.docker/config.json and its
credential helpers). Exit codes: 0 success, 1 the command failed, 2 usage
error; strata run passes the container's exit code through.`

type helpText struct{ long, example string }

var helpTexts = map[string]helpText{
	"build": {
		long: `Build an image from a Dockerfile, as docker build does, without a daemon.

PATH is the build context: the directory COPY and ADD read from ("-" reads a
tar archive of it, or a lone Dockerfile, from stdin). The Dockerfile is
PATH/Dockerfile unless -f names another. strata builds only the stages the
target (--target, else the last stage) needs, independent stages at the same
time, runs RUN steps in runc on overlayfs, and reuses the build cache for
every step whose inputs did not change.

The image goes into the store (name it with -t) unless --output sends it
elsewhere: type=docker (a docker load archive), type=oci (an OCI layout
archive), type=local (the final filesystem in a directory), type=registry
(push). Exit codes: 0 built, 1 the build failed, 2 the command line is wrong;
Ctrl-C stops the build and releases its mounts and containers.`,
		example: `  strata build -t myapp:1.0 .
  strata build -f build/Dockerfile --target test .
  strata build --build-arg VERSION=2 --build-arg HTTP_PROXY -t myapp .
  strata build -o type=docker,dest=myapp.tar,name=myapp:1.0 .    # docker load -i myapp.tar
  strata build -o type=local,dest=rootfs/ .
  strata build -t registry.example.com/myapp:1.0 --push .
  strata build --secret id=token,src=token.txt --ssh default .
  strata build --cache-to type=local,dest=/tmp/cache --cache-from type=local,src=/tmp/cache .
  strata build --progress=plain --no-cache -q --iidfile id.txt .
  tar -C ctx -c . | strata build -`,
	},
	"images": {
		long: `List the images in the store: repository, tag, image ID (the first 12
hex digits of the config digest), when it was made and its size (the content
of its layers, uncompressed: the Size of 'strata inspect', as docker shows).
Untagged (dangling) images - built without -t, or left when a build or tag
gave their name to another image - are listed as <none> <none> with -a or
--filter dangling=true; their ID names them in every command, and 'strata
prune' or 'strata rmi ID' removes them.`,
		example: `  strata images
  strata images -a
  strata images --filter dangling=true -q`,
	},
	"tag": {
		long: `Give an image in the store another name, as docker tag does. SOURCE_IMAGE
is a name, NAME@DIGEST or an image ID (or a prefix of it); TARGET_IMAGE is
a name with an optional tag (":latest" when left out).`,
		example: `  strata tag myapp:1.0 registry.example.com/team/myapp:1.0
  strata tag 3f2a9c0e7b2d myapp:stable`,
	},
	"rmi": {
		long: `Remove images from the store, as docker rmi does. A name is untagged, and
the image goes with its last name; an image given by ID (or a prefix of it)
or digest goes with all its names (more than one needs --force). The data
stays until no image and no build cache record uses it and 'strata prune'
runs.`,
		example: `  strata rmi myapp:1.0 myapp:old
  strata rmi 3f2a9c0e7b2d`,
	},
	"save": {
		long: `Write an image from the store to a tar archive: a docker-archive that
'docker load' reads (the default) or, with --format oci, an OCI image layout
archive.`,
		example: `  strata save -o myapp.tar myapp:1.0 && docker load -i myapp.tar
  strata save --format oci -o myapp.oci.tar myapp:1.0`,
	},
	"load": {
		long: `Load the images of a tar archive into the store, with their names, as
'docker load' does. It reads docker-archives (what 'docker save' and 'strata
save' write) and OCI image layout archives (what 'strata save --format oci',
'strata build -o type=oci' and 'docker buildx --output type=oci' write). An
archive with both, as 'docker save' writes since Docker 25, is read as an OCI
layout (so manifests keep their digests) unless its index.json misses images
or names that its manifest.json has. An OCI image's name comes from its
io.containerd.image.name annotation, else org.opencontainers.image.ref.name;
from a multi-platform index, the image for the host platform is loaded. An
image without a name is kept all the same, as an untagged image that every
command takes by its ID (the "Loaded image ID:" line; 'strata images -a').

Every blob it loads is first checked against its digest and every layer
against the diffID its image config gives it (and, in OCI archives, its media
type: tar, tar+gzip or tar+zstd): a damaged archive is refused whole, and
nothing of it is written.`,
		example: `  docker save busybox:latest -o busybox.tar && strata load -i busybox.tar
  strata load -i myapp.oci.tar`,
	},
	"pull": {
		long: `Pull an image for the host platform (or --platform's) from a registry into
the store. A name that is a multi-platform index keeps naming the index (as
containerd keeps it), with the images pulled so far.
Credentials come from Docker's config (~/.docker/config.json and its credential
helpers); mirrors and plain-http registries from the --config file or
STRATA_REGISTRY_MIRRORS.`,
		example: `  strata pull busybox
  strata pull golang:1.26
  STRATA_REGISTRY_MIRRORS=docker.io=http://127.0.0.1:5000 strata pull alpine:3.20`,
	},
	"push": {
		long: `Push an image from the store to its registry, or to DESTINATION when given.
Credentials come from Docker's config (~/.docker/config.json and its credential
helpers); plain-http registries are set as insecure in the --config file.`,
		example: `  strata push registry.example.com/myapp:1.0
  strata push myapp:1.0 localhost:5000/myapp:1.0`,
	},
	"run": {
		long: `Run a command in a new container made from an image, as docker run --rm
does: the image's ENTRYPOINT and CMD (or COMMAND and ARG), its environment,
user and working directory, in runc, on an overlay of the image's layers. The
container is removed when it exits, and strata exits with its exit code.
IMAGE is a name, NAME@DIGEST, or an image ID or a prefix of it (as 'strata
build -q' prints it).

-i passes stdin through (without it the container reads nothing); -t gives
the container a terminal, which runc joins to strata's own (it must be one)
and puts in raw mode while the container runs. -v HOST-DIR:CONTAINER-DIR[:ro]
bind-mounts a host directory (absolute, and it must exist). --network is
host (the default, as RUN) or none (only loopback). --name names the
container: its runc id ends in the name, and a second container of the same
name in the store fails while the first runs.`,
		example: `  strata run busybox echo hello
  echo hi | strata run -i busybox cat
  strata run -it busybox sh
  strata run -v "$PWD":/src:ro -w /src myapp:1.0 make test
  strata run -e DEBUG=1 -u nobody -w /tmp --name dev myapp:1.0
  strata run --entrypoint sh myapp:1.0 -c 'ls -l /'
  strata run --network none busybox ping -c1 example.com`,
	},
	"import": {
		long: `Make a one-layer image from a root filesystem: a directory, or a tar archive
(plain, gzip, zstd or bzip2). --change applies Dockerfile instructions that
only touch the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME,
WORKDIR, ONBUILD, STOPSIGNAL, SHELL, HEALTHCHECK) to the image.
strata prints the image ID; NAME tags it. SOURCE_DATE_EPOCH fixes the
timestamps, for the same image ID on every run.`,
		example: `  strata import --change 'CMD ["sh"]' rootfs/ busybox:latest
  strata import -c 'ENV PATH=/usr/bin:/bin' -m 'base system' rootfs.tar.gz mybase:1`,
	},
	"version": {
		long:    `Show the strata version and the version of the runc it runs RUN steps with.`,
		example: `  strata version`,
	},
	"du": {
		long: `Show how much disk the store uses: the images' blobs and unpacked layers, the
build cache, cache mounts (RUN --mount=type=cache), data nothing uses any more,
and what 'strata prune --all' would reclaim.`,
		example: `  strata du`,
	},
	"prune": {
		long: `Remove untagged (dangling) images, build cache and data no image uses,
least recently used first, as docker system prune does. Tagged images and what
they need always stay. Without --all only the cache records no image uses go;
--keep-storage trims the cache down to that much and leaves images alone (as
docker builder prune --keep-storage); --filter until=DURATION removes only
cache unused for that long and untagged images created before that.`,
		example: `  strata prune
  strata prune --all
  strata prune --keep-storage 10GB
  strata prune --filter until=24h`,
	},
}
