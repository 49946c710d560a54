FROM busybox
COPY <<EOF /x
hi
EOF
BOGUS x
