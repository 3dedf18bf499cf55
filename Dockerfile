# Shoal as a container: one static binary in an empty image.
# Build it with `make image`, which compiles bin/shoal (CGO_ENABLED=0) on the
# host first, so no base image has to be pulled.
FROM scratch
COPY bin/shoal /shoal
EXPOSE 8080
# Runs as nobody by default; to read the Docker socket add its group with
# `group_add` (compose) or `--group-add` (docker run).
USER 65534:65534
HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD ["/shoal", "healthcheck"]
ENTRYPOINT ["/shoal"]
