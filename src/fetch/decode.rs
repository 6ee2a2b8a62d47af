//! Compressed responses (inside `fetch`, between the wire and the body buffer): a body sent
//! with `Content-Encoding` gzip, deflate, br or zstd is decoded as its chunks arrive, into
//! the same buffer an identity body goes to.
//!
//! Guarantee: `max_body_bytes` bounds the decoded size, checked as the decoder writes, so a
//! small compressed bomb stops while it inflates; the bytes on the wire are counted apart.
//! Each chunk is decoded where it arrives: a few microseconds per chunk, with no chunk held.

use std::io::{self, Write};

use reqwest::header::{CONTENT_ENCODING, HeaderMap};

use super::FetchError;
use super::buffer::Buffer;

/// What `Accept-Encoding` offers (when the source does not set the header itself).
pub(super) const ACCEPTED: &str = "gzip, deflate, br, zstd";

/// How a response body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Encoding {
    /// The response's `Content-Encoding`; one coding at most (nobody stacks them for JSON).
    pub(super) fn of(headers: &HeaderMap) -> Result<Self, FetchError> {
        let Some(v) = headers.get(CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
        Ok(match v.as_str() {
            "" | "identity" => Encoding::Identity,
            "gzip" | "x-gzip" => Encoding::Gzip,
            "deflate" => Encoding::Deflate,
            "br" => Encoding::Brotli,
            "zstd" => Encoding::Zstd,
            other => {
                return Err(FetchError::Body(format!(
                    "unsupported Content-Encoding {:?} (jsonbridge decodes gzip, deflate, br and zstd)",
                    other.chars().take(40).collect::<String>()
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }
}

/// Where decoded bytes go: the body buffer, refusing to pass `limit`.
struct Sink {
    body: Buffer,
    limit: u64,
    over: bool,
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if (self.body.len() + b.len()) as u64 > self.limit {
            self.over = true;
            return Err(io::Error::other("over max_body_bytes"));
        }
        self.body.push(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Inner {
    Identity(Sink),
    Gzip(flate2::write::GzDecoder<Sink>),
    Deflate(flate2::write::ZlibDecoder<Sink>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Sink>>),
    Zstd(zstd::stream::write::Decoder<'static, Sink>),
}

/// A body being received: the wire's bytes in, the decoded body out.
pub(super) struct Decoder {
    inner: Inner,
    encoding: Encoding,
    wire: u64,
}

impl Decoder {
    /// `expected`: the announced length, for an identity body (see `Buffer::new`).
    pub(super) fn new(
        encoding: Encoding,
        expected: Option<u64>,
        limit: u64,
    ) -> Result<Self, FetchError> {
        let sink = |expected| Sink {
            body: Buffer::new(expected),
            limit,
            over: false,
        };
        let inner = match encoding {
            Encoding::Identity => Inner::Identity(sink(expected)),
            // The wire length says little about the decoded one.
            Encoding::Gzip => Inner::Gzip(flate2::write::GzDecoder::new(sink(None))),
            Encoding::Deflate => Inner::Deflate(flate2::write::ZlibDecoder::new(sink(None))),
            Encoding::Brotli => Inner::Brotli(Box::new(
                brotli_decompressor::DecompressorWriter::new(sink(None), 64 * 1024),
            )),
            Encoding::Zstd => Inner::Zstd(
                zstd::stream::write::Decoder::new(sink(None))
                    .map_err(|e| FetchError::Body(format!("cannot decode zstd: {e}")))?,
            ),
        };
        Ok(Self {
            inner,
            encoding,
            wire: 0,
        })
    }

    fn sink(&self) -> &Sink {
        match &self.inner {
            Inner::Identity(s) => s,
            Inner::Gzip(d) => d.get_ref(),
            Inner::Deflate(d) => d.get_ref(),
            Inner::Brotli(d) => d.get_ref(),
            Inner::Zstd(d) => d.get_ref(),
        }
    }

    /// Decodes one chunk from the wire.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        self.wire += chunk.len() as u64;
        let written = match &mut self.inner {
            Inner::Identity(s) => s.write_all(chunk),
            Inner::Gzip(d) => d.write_all(chunk),
            Inner::Deflate(d) => d.write_all(chunk),
            Inner::Brotli(d) => d.write_all(chunk),
            Inner::Zstd(d) => d.write_all(chunk),
        };
        written.map_err(|e| self.error(e))
    }

    /// Bytes decoded so far.
    pub(super) fn len(&self) -> usize {
        self.sink().body.len()
    }

    /// Bytes received from the wire so far.
    pub(super) fn wire(&self) -> u64 {
        self.wire
    }

    fn error(&self, e: io::Error) -> FetchError {
        match self.sink().over {
            true => FetchError::TooLarge {
                limit: self.sink().limit,
            },
            false => FetchError::Body(format!("cannot decode {}: {e}", self.encoding.name())),
        }
    }

    /// The decoded body, once the wire is done.
    pub(super) fn finish(self) -> Result<Buffer, FetchError> {
        let encoding = self.encoding;
        let bad =
            |e: io::Error| FetchError::Body(format!("cannot decode {}: {e}", encoding.name()));
        let sink = match self.inner {
            Inner::Identity(s) => s,
            Inner::Gzip(d) => d.finish().map_err(bad)?,
            Inner::Deflate(d) => d.finish().map_err(bad)?,
            Inner::Brotli(mut d) => {
                d.close().map_err(bad)?;
                d.into_inner()
                    .map_err(|_| bad(io::Error::other("the stream is incomplete")))?
            }
            Inner::Zstd(mut d) => {
                d.flush().map_err(bad)?;
                d.into_inner()
            }
        };
        if sink.over {
            return Err(FetchError::TooLarge { limit: sink.limit });
        }
        Ok(sink.body)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    /// `body` encoded as `encoding` says (the test side of the codecs).
    pub(crate) fn encode(encoding: Encoding, body: &[u8]) -> Vec<u8> {
        match encoding {
            Encoding::Identity => body.to_vec(),
            Encoding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(body).unwrap();
                e.finish().unwrap()
            }
            Encoding::Deflate => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(body).unwrap();
                e.finish().unwrap()
            }
            Encoding::Brotli => {
                let mut out = Vec::new();
                {
                    let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    e.write_all(body).unwrap();
                }
                out
            }
            Encoding::Zstd => zstd::encode_all(body, 3).unwrap(),
        }
    }

    const ALL: [Encoding; 5] = [
        Encoding::Identity,
        Encoding::Gzip,
        Encoding::Deflate,
        Encoding::Brotli,
        Encoding::Zstd,
    ];

    fn decode(
        encoding: Encoding,
        wire: &[u8],
        limit: u64,
        chunk: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let mut d = Decoder::new(encoding, None, limit)?;
        for c in wire.chunks(chunk) {
            d.push(c)?;
            // Never past the limit, whatever one chunk inflates to.
            assert!(d.len() as u64 <= limit);
        }
        assert_eq!(d.wire(), wire.len() as u64);
        Ok(d.finish()?.into_bytes().to_vec())
    }

    #[test]
    fn every_encoding_decodes_in_any_chunks() {
        let body: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("{{\"n\": {i}}},").into_bytes())
            .collect();
        for e in ALL {
            let wire = encode(e, &body);
            for chunk in [1, 7, 4096, wire.len().max(1)] {
                let got = decode(e, &wire, 10 << 20, chunk).unwrap();
                assert!(got == body, "{e:?} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_while_it_inflates() {
        // 64 MiB of zeros: a few kilobytes on the wire.
        let body = vec![b'0'; 64 << 20];
        for e in ALL {
            let wire = encode(e, &body);
            match decode(e, &wire, 1 << 20, 16 * 1024) {
                Err(FetchError::TooLarge { limit }) => assert_eq!(limit, 1 << 20, "{e:?}"),
                other => panic!("{e:?}: {:?}", other.map(|b| b.len())),
            }
        }
    }

    #[test]
    fn damaged_or_unknown_encodings_are_body_errors() {
        let wire = encode(Encoding::Gzip, b"{\"n\": 1}");
        let mut bad = wire.clone();
        bad[12] ^= 0xff;
        for e in [
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Brotli,
            Encoding::Zstd,
        ] {
            let r = decode(
                e,
                if e == Encoding::Gzip { &bad } else { &wire },
                1 << 20,
                64,
            );
            assert!(matches!(r, Err(FetchError::Body(_))), "{e:?}: {r:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, "compress".parse().unwrap());
        assert!(matches!(Encoding::of(&h), Err(FetchError::Body(m)) if m.contains("compress")));
        h.insert(CONTENT_ENCODING, " GZIP ".parse().unwrap());
        assert_eq!(Encoding::of(&h).unwrap(), Encoding::Gzip);
    }
}
