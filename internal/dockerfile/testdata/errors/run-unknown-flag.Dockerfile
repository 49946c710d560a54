FROM busybox
RUN --nope true
