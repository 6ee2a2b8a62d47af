# syntax=docker/dockerfile:1
# Multi-stage build: a static binary compiled in the Rust image, run from distroless/static
# (no libc, no shell, no package manager) as a non-root user.
#   docker build -t jsonbridge .
#   docker run -p 10795:10795 -v $PWD/config:/etc/jsonbridge jsonbridge
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# glibc linked statically (+crt-static); DNS goes through hickory (pure Rust), so nothing
# needs glibc's NSS at run time. Verified outside Docker: the binary serves from an empty
# root holding only itself, its config, /dev/urandom and the CA bundle.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --target "$(uname -m)-unknown-linux-gnu" \
 && cp "target/$(uname -m)-unknown-linux-gnu/release/jsonbridge" /jsonbridge \
 && strip /jsonbridge

# distroless/static: CA certificates and /etc/passwd only; 65532 is its "nonroot" user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /jsonbridge /usr/local/bin/jsonbridge
USER 65532:65532
EXPOSE 10795
ENTRYPOINT ["/usr/local/bin/jsonbridge"]
CMD ["--config.file=/etc/jsonbridge/jsonbridge.yaml", "--web.listen-address=:10795"]
