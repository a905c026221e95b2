# syntax=docker/dockerfile:1
# pathprobe: build with the Rust toolchain, run on distroless (glibc, CA certificates, no shell),
# as the non-root user 65532.
#   docker build -t ghcr.io/<you>/pathprobe:0.1.0 . && docker push ghcr.io/<you>/pathprobe:0.1.0
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin pathprobe \
 && strip target/release/pathprobe

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/pathprobe /usr/local/bin/pathprobe
USER 65532:65532
EXPOSE 9807
ENTRYPOINT ["/usr/local/bin/pathprobe"]
CMD ["run", "--config", "/etc/pathprobe/inventory.yaml"]
