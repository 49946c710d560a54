# Variants share their first stages and differ in the last one.
FROM busybox AS base
RUN mkdir -p /app && echo base > /app/base
WORKDIR /app

FROM base AS build
COPY src/ /src/
RUN cat /src/*.txt > /app/bundle && wc -c < /app/bundle > /app/size

FROM base AS test
RUN --mount=type=bind,from=build,source=/app,target=/mnt cmp /mnt/base /app/base && echo passed > /app/tested

FROM build AS final-b
COPY --from=test /app/tested /app/
RUN echo variant b > /app/variant && cat /app/size /app/variant > /app/info
LABEL variant=b
