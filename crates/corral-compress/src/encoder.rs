//! One answer's streaming encoder: each piece of body in, compressed and flushed out, so a
//! slow stream (server-sent events, a long report) reaches the client as it comes, with
//! memory bounded by the coding's window whatever the body's length.

use std::io::{self, Write};

use corral_config::Coding;
use flate2::write::GzEncoder;

/// The window of Brotli and zstd, 2^19 = 512 KiB: what bounds an encoder's memory. The
/// codings' defaults (4 MiB and up) gain little on answers and would multiply the memory
/// of many concurrent ones.
const WINDOW_LOG: u32 = 19;
/// Brotli's input buffer.
const BROTLI_BUFFER: usize = 4096;

/// A streaming encoder into an output buffer the caller takes after each piece.
pub struct Encoder {
    inner: Inner,
    coding: Coding,
    read: u64,
    written: u64,
}

enum Inner {
    Gzip(GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder for `coding` at `level` (already checked against the coding's range).
    pub fn new(coding: Coding, level: u32) -> io::Result<Encoder> {
        let inner = match coding {
            Coding::Gzip => {
                Inner::Gzip(GzEncoder::new(Vec::new(), flate2::Compression::new(level)))
            }
            Coding::Brotli => Inner::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level,
                WINDOW_LOG,
            ))),
            Coding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level as i32)?;
                encoder.window_log(WINDOW_LOG)?;
                Inner::Zstd(encoder)
            }
        };
        Ok(Encoder {
            inner,
            coding,
            read: 0,
            written: 0,
        })
    }

    /// The coding this encoder writes.
    pub fn coding(&self) -> Coding {
        self.coding
    }

    /// Compresses `input` and flushes it: on return `out` holds every byte the client
    /// needs to decode all input so far (`out` is cleared first and reused as the sink).
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.read += input.len() as u64;
        out.clear();
        let sink = self.sink();
        std::mem::swap(sink, out);
        let result = match &mut self.inner {
            Inner::Gzip(e) => e.write_all(input).and_then(|()| e.flush()),
            Inner::Brotli(e) => e.write_all(input).and_then(|()| e.flush()),
            Inner::Zstd(e) => e.write_all(input).and_then(|()| e.flush()),
        };
        std::mem::swap(self.sink(), out);
        self.written += out.len() as u64;
        result
    }

    /// Ends the stream: `out` gets the last bytes. Returns the body bytes read and written.
    pub fn finish(self, out: &mut Vec<u8>) -> io::Result<(u64, u64)> {
        let tail = match self.inner {
            Inner::Gzip(e) => e.finish()?,
            Inner::Brotli(e) => e.into_inner(),
            Inner::Zstd(e) => e.finish()?,
        };
        *out = tail;
        Ok((self.read, self.written + out.len() as u64))
    }

    fn sink(&mut self) -> &mut Vec<u8> {
        match &mut self.inner {
            Inner::Gzip(e) => e.get_mut(),
            Inner::Brotli(e) => e.get_mut(),
            Inner::Zstd(e) => e.get_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map(drop),
            Coding::Brotli => brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .map(drop),
            Coding::Zstd => zstd::stream::read::Decoder::new(bytes)
                .and_then(|mut d| d.read_to_end(&mut out))
                .map(drop),
        }
        .expect("decodes");
        out
    }

    #[test]
    fn each_piece_is_decodable_as_it_comes_and_the_whole_round_trips() {
        let body: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"v\":{}}},", i % 97).into_bytes())
            .take(300_000)
            .collect();
        for coding in Coding::ALL {
            let mut encoder = Encoder::new(coding, 3).expect("encoder");
            let mut stream = Vec::new();
            let mut out = Vec::new();
            for (i, piece) in body.chunks(7_000).enumerate() {
                encoder.push(piece, &mut out).expect("push");
                stream.extend_from_slice(&out);
                if i == 0 {
                    // The first piece alone decodes as far as it goes (a flush, not a hold).
                    let mut partial = Vec::new();
                    let _ = match coding {
                        Coding::Gzip => {
                            flate2::read::GzDecoder::new(&stream[..]).read_to_end(&mut partial)
                        }
                        Coding::Brotli => {
                            brotli::Decompressor::new(&stream[..], 4096).read_to_end(&mut partial)
                        }
                        Coding::Zstd => zstd::stream::read::Decoder::new(&stream[..])
                            .and_then(|mut d| d.read_to_end(&mut partial)),
                    };
                    assert_eq!(&partial[..], piece, "{coding:?} held back its first piece");
                }
            }
            let (read, written) = encoder.finish(&mut out).expect("finish");
            stream.extend_from_slice(&out);
            assert_eq!(read, body.len() as u64);
            assert_eq!(written, stream.len() as u64);
            assert!(
                stream.len() < body.len() / 4,
                "{coding:?}: {}",
                stream.len()
            );
            assert_eq!(decode(coding, &stream), body, "{coding:?}");
        }
    }
}
