FROM busybox
RUN --bogus set -eux; \
    echo one; \
    false
