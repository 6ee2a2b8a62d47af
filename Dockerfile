# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from distroless as a non-root user.
#   docker build -t jsonbridge .
#   docker run -p 10795:10795 -v $PWD/config:/etc/jsonbridge jsonbridge
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/jsonbridge

# distroless/cc: glibc and CA certificates, no shell, no package manager; 65532 is its
# "nonroot" user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/jsonbridge /usr/local/bin/jsonbridge
USER 65532:65532
EXPOSE 10795
ENTRYPOINT ["/usr/local/bin/jsonbridge"]
CMD ["--config.file=/etc/jsonbridge/jsonbridge.yaml", "--web.listen-address=:10795"]
