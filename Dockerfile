# syntax=docker/dockerfile:1
# The pathprobe image: one statically linked binary, Debian's CA bundle, /etc/passwd with the
# non-root user 65532, and an empty /tmp; FROM scratch, no shell. scripts/image-rootfs makes
# those files, in the build stage below (Docker) or on this machine (scripts/image, buildah,
# offline: `--build-context build=…` replaces the build stage with them). Either way the final
# stage is the same, so both builds describe one image.
#
#   docker build --build-arg PATHPROBE_REVISION=$(git rev-parse HEAD) \
#     -t ghcr.io/pathprobe/pathprobe:0.1.0 .
#   scripts/image          # the same image with buildah, no daemon and no registry
#
# The tag is the crate's version (Cargo.toml); deploy/base names ghcr.io/pathprobe/pathprobe
# with that tag, and each overlay's `images:` entry points it at your registry.

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
ARG PATHPROBE_REVISION=unknown
ARG SOURCE_DATE_EPOCH=0
RUN CARGO_TARGET_DIR=/target scripts/image-rootfs /rootfs

FROM scratch
ARG VERSION=0.1.0
ARG PATHPROBE_REVISION=unknown
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 9807
ENTRYPOINT ["/usr/local/bin/pathprobe"]
CMD ["run", "--config", "/etc/pathprobe/inventory.yaml"]
LABEL org.opencontainers.image.title="pathprobe" \
      org.opencontainers.image.description="Per-node synthetic probe agent: says why a target is unreachable" \
      org.opencontainers.image.source="https://github.com/pathprobe/pathprobe" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${PATHPROBE_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
