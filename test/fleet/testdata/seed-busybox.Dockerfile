# A variant seen only in round 2: the seed's builder stage (unchanged, so
# its steps hit) and a final stage of its own on busybox.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS TARGETARCH
COPY go.mod server.go /build/
WORKDIR /build
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags '-w -s' -o server

FROM busybox AS seed-on-busybox
COPY --from=builder /build/server /usr/local/bin/server
RUN test -x /usr/local/bin/server && echo ok > /checked
ENTRYPOINT ["/usr/local/bin/server"]
