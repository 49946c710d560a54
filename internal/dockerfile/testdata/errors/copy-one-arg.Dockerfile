FROM busybox
COPY a
