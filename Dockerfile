# raftkv in an empty image: just the static binary.
#
# No builder stage: build the binary on the host first, then the image.
#
#   CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o raftkv ./cmd/raftkv
#   docker build -t raftkv .
#   docker run --rm raftkv --help
#
# docker-compose.yml runs a three-member cluster from this image.
FROM scratch
COPY raftkv /raftkv
# Each member keeps its WAL and snapshots here; mount a volume on it.
VOLUME ["/data"]
# RESP (Redis protocol), Raft peers, HTTP API.
EXPOSE 6379 7000 8080
ENTRYPOINT ["/raftkv"]
CMD ["--help"]
