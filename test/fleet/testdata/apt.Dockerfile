# Real-world style: packages installed into a runtime stage (what
# apt-get install leaves: files under /usr, dpkg's status, no lists),
# the same go build as the seed, the server copied onto the runtime.
FROM busybox AS runtime
RUN mkdir -p /var/lib/dpkg /usr/lib/x86_64-linux-gnu /usr/share/doc \
 && for p in libc-bin libssl3 ca-certificates tzdata; do \
      printf 'Package: %s\nStatus: install ok installed\n\n' $p >> /var/lib/dpkg/status; \
      yes "$p" | head -c 300000 > /usr/lib/x86_64-linux-gnu/$p.so; \
      mkdir -p /usr/share/doc/$p && echo "$p" > /usr/share/doc/$p/copyright; \
    done \
 && rm -rf /var/lib/apt/lists/*
RUN echo "app:x:10001:10001::/home/app:/bin/sh" >> /etc/passwd && mkdir -p /home/app && chown 10001 /home/app

FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS TARGETARCH
COPY go.mod server.go /build/
WORKDIR /build
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags '-w -s' -o server

FROM runtime
COPY --from=builder /build/server /usr/local/bin/server
USER app
ENTRYPOINT ["/usr/local/bin/server"]
