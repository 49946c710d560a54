FROM busybox AS a
FROM a
COPY --from=a --bogus=1 x y
