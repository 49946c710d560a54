FROM busybox
WORKDIR /src
COPY --nope a b
